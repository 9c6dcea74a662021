package watch_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// bareProber is a process that loaded no extra roots: the lab's root is
// in no store it has.
func bareProber() *watch.Prober {
	return &watch.Prober{Base: probe.Options{Roots: x509.NewCertPool(), NoAIA: true, NoLegacyProtocols: true, NoRevocation: true, SingleAddress: true}}
}

func hasCode(r *probe.Report, code string) bool {
	return slices.ContainsFunc(r.Findings, func(f probe.Finding) bool { return f.Code == code })
}

// A watch carries its trust roots: added with the lab's root (ca_pem), it
// is probed trusted by an engine whose process never loaded that root, also
// after a restart with a fresh prober.
func TestWatchCarriesItsRoots(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	e := newEnv(t, watch.Config{Prober: bareProber()}, p.Now)
	plain, err := e.eng.Add(ctxT(t), srv.spec("@every 1s"))
	if err != nil {
		t.Fatal(err)
	}
	if plain.LastReport.Trusted || !hasCode(plain.LastReport, probe.CodeUntrustedRoot) {
		t.Fatalf("without the root: %+v", plain.LastReport.Findings)
	}
	s := srv.spec("@every 1s")
	s.CAPEM = p.Root.PEM()
	w, err := e.eng.Add(ctxT(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if !w.LastReport.Trusted || w.LastReport.Status != probe.StatusOK || len(w.CARoots) != 1 {
		t.Fatalf("with the watch's root: %s %+v, roots %+v", w.LastReport.Status, w.LastReport.Findings, w.CARoots)
	}
	e.cfg.Prober = bareProber()
	e.restart()
	e.settle(100*time.Millisecond, "a scheduled probe after the restart", func() bool {
		g := e.get(w.ID)
		return g.LastCheckedAt.After(*w.LastCheckedAt)
	})
	if g := e.get(w.ID); g.State != watch.StateUp || !g.LastReport.Trusted {
		t.Errorf("after a restart without the root: %s %+v", g.State, g.LastReport.Findings)
	}
}

// A dial must pass both the prober's policy and the one stored with the
// watch.
func TestProberAppliesBothPolicies(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	deny := netpolicy.Config{DenyPrivate: true}
	allowLoop := netpolicy.Config{AllowCIDRs: []string{"127.0.0.0/8"}}
	for _, c := range []struct {
		name          string
		base, watched netpolicy.Config
		blocked       bool
	}{
		{"neither", netpolicy.Config{}, netpolicy.Config{}, false},
		{"the watch's", netpolicy.Config{}, deny, true},
		{"the prober's", deny, netpolicy.Config{}, true},
		{"an allow in one does not lift the other's deny", deny, allowLoop, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pol, err := netpolicy.New(c.base)
			if err != nil {
				t.Fatal(err)
			}
			pr := &watch.Prober{Base: probe.Options{Roots: p.Roots(), Policy: pol, NoAIA: true, NoRevocation: true, NoLegacyProtocols: true}}
			rec := store.Record{Target: probe.TargetInfo{Host: testlab.DefaultHost, Port: srv.Port, IP: "127.0.0.1"}, Probe: &store.ProbeConfig{Policy: c.watched}}
			rep, err := pr.Run(ctxT(t), &rec, p.Now)
			if err != nil {
				t.Fatal(err)
			}
			if got := hasCode(&rep, probe.CodeTargetBlocked); got != c.blocked {
				t.Errorf("target_blocked %v, want %v: %+v", got, c.blocked, rep.Findings)
			}
		})
	}
}

// writePair writes a client certificate and its key as PEM files.
func writePair(t *testing.T, dir, name string, c tls.Certificate) (string, string) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, []byte(testlab.ChainPEM(c)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// The client certificate of a watch: from its files when it has them (a
// renewed file is picked up), else this process's certificate of that
// name, else none.
func TestProberClientCert(t *testing.T) {
	p := testlab.NewPKI(t)
	dir := t.TempDir()
	first := p.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "first"})
	certFile, keyFile := writePair(t, dir, "me", first)
	specs := []string{"loaded=" + certFile + "," + keyFile}
	loaded, err := watch.LoadClientCerts(specs)
	if err != nil {
		t.Fatal(err)
	}
	if c := loaded["loaded"]; c.CertFile != certFile || !filepath.IsAbs(c.KeyFile) || c.Pair.Leaf == nil {
		t.Fatalf("LoadClientCerts: %+v", c)
	}
	pr := &watch.Prober{ClientCerts: loaded}
	cn := func(rec store.Record) string {
		_, o := pr.Options(&rec, p.Now)
		if o.ClientCert == nil {
			return ""
		}
		leaf, _ := x509.ParseCertificate(o.ClientCert.Certificate[0])
		return leaf.Subject.CommonName
	}
	byFiles := store.Record{ClientCert: "me", Probe: &store.ProbeConfig{ClientCertFile: certFile, ClientKeyFile: keyFile}}
	if got := cn(byFiles); got != "first" {
		t.Errorf("from the watch's files: %q", got)
	}
	// Renewed in place: the next probe presents the new one.
	writePair(t, dir, "me", p.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "renewed"}))
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(certFile, later, later); err != nil {
		t.Fatal(err)
	}
	if got := cn(byFiles); got != "renewed" {
		t.Errorf("after renewal: %q", got)
	}
	if got := cn(store.Record{ClientCert: "loaded", Probe: &store.ProbeConfig{ClientCertFile: filepath.Join(dir, "gone.crt"), ClientKeyFile: keyFile}}); got != "first" {
		t.Errorf("files gone, the process's certificate of that name: %q", got)
	}
	if got := cn(store.Record{ClientCert: "unknown"}); got != "" {
		t.Errorf("unknown name: %q", got)
	}
	if _, err := watch.LoadClientCerts(append(specs, specs...)); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a name given twice: %v", err)
	}
}

// The largest values the validator accepts are what the store must hold:
// a watch made of them survives a restart unchanged.
func TestLimitsFitTheStore(t *testing.T) {
	p := testlab.NewPKI(t)
	var roots []string
	for i := 0; i < watch.MaxRoots; i++ {
		roots = append(roots, p.NewRoot("root "+string(rune('a'+i))).PEM())
	}
	// The largest of each unit, then as many more as allowed.
	th := []any{watch.MaxThresholdDays, strconv.Itoa(watch.MaxThresholdHours) + "h", "100%"}
	for d := 1; len(th) < watch.MaxThresholds; d++ {
		th = append(th, strconv.Itoa(d)+"h")
	}
	cidrs := make([]string, watch.MaxCIDRs)
	for i := range cidrs {
		cidrs[i] = "10.0." + strconv.Itoa(i) + ".0/24"
	}
	spec := watch.Spec{Target: "https://" + strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".test/" + strings.Repeat("p", 1800),
		Schedule: "0 " + strings.TrimSuffix(strings.Repeat("1,", 100), ",") + " * * *", Thresholds: th,
		FailureThreshold: watch.MaxFailureThreshold, CAPEM: strings.Join(roots, ""), ClientCert: strings.Repeat("n", 64),
		Policy: netpolicy.Config{DenyPrivate: true, AllowCIDRs: cidrs, DenyCIDRs: cidrs}, MCP: true,
		TokenName: strings.Repeat("t", 64), CreatedBy: strings.Repeat("s", watch.MaxSubjectLen)}
	e := newEnv(t, watch.Config{Prober: &watch.Prober{Probe: func(_ context.Context, tg probe.Target, o probe.Options) (probe.Report, error) {
		return probe.Report{Target: probe.TargetInfo{Host: tg.Host, Port: tg.Port}, CheckedAt: o.Now, Status: probe.StatusOK, Findings: []probe.Finding{}}, nil
	}}, NoScheduler: true}, p.Now)
	w, err := e.eng.Add(ctxT(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	g := e.get(w.ID)
	g.LastReport, w.LastReport = nil, nil
	if !slices.Equal(g.ThresholdsDays, w.ThresholdsDays) || len(g.CARoots) != watch.MaxRoots || g.OutboundPolicy == nil ||
		len(g.OutboundPolicy.DenyCIDRs) != watch.MaxCIDRs || g.Path != w.Path || g.CreatedBy != w.CreatedBy || g.Schedule != w.Schedule {
		t.Errorf("after a restart:\n%+v\nwant\n%+v", g, w)
	}
}
