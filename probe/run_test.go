package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// labTarget is the Target for a lab scenario: its host name, dialled at
// its loopback address.
func labTarget(sc *testlab.Scenario) Target {
	return Target{Host: sc.Host, Port: sc.Port, IP: sc.IP, Timeout: 5 * time.Second}
}

func labOptions(sc *testlab.Scenario) Options {
	return Options{Now: sc.Now, Roots: sc.Roots}
}

func runLab(t *testing.T, sc *testlab.Scenario) Report {
	t.Helper()
	r, err := Run(context.Background(), labTarget(sc), labOptions(sc))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

func findingsOf(r Report) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range r.Findings {
		if _, ok := m[f.Code]; !ok {
			m[f.Code] = f
		}
	}
	return m
}

func codesOf(r Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Code+"/"+string(f.Severity))
	}
	return out
}

func TestRunScenarios(t *testing.T) {
	pki := testlab.NewPKI(t)
	type want struct {
		status    Status
		reachable bool
		trusted   bool
		stage     Stage
		codes     map[string]Severity // must be present with this severity
		absent    []string            // must not be present
		msg       map[string]string   // code -> substring of its message
		complete  string              // chain.complete: "yes", "no", or "" unchecked
	}
	cases := []struct {
		scenario string
		want     want
	}{
		{testlab.ScenarioValid, want{status: StatusOK, reachable: true, trusted: true, stage: StageNone,
			absent: []string{CodeDeprecatedProtocol, CodeChainOrder, CodeRootInChain, CodeIncompleteChain}}},
		{testlab.ScenarioValidRSA, want{status: StatusOK, reachable: true, trusted: true, stage: StageNone,
			absent: []string{CodeWeakKey}}},
		{testlab.ScenarioIPSAN, want{status: StatusOK, reachable: true, trusted: true, stage: StageNone}},
		{testlab.ScenarioExpired, want{status: StatusDown, reachable: true, trusted: false, stage: StageExpired,
			codes: map[string]Severity{CodeExpired: SeverityCritical}, absent: []string{CodeExpiringSoon, CodeUntrustedRoot}}},
		{testlab.ScenarioNotYetValid, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeNotYetValid: SeverityCritical}, msg: map[string]string{CodeNotYetValid: "(2 days from now)"}}},
		{testlab.ScenarioExpiring29d, want{status: StatusOK, reachable: true, trusted: true, stage: "30d",
			codes: map[string]Severity{CodeExpiringSoon: SeverityInfo}}},
		{testlab.ScenarioExpiring13d, want{status: StatusWarning, reachable: true, trusted: true, stage: "14d",
			codes: map[string]Severity{CodeExpiringSoon: SeverityWarning}}},
		{testlab.ScenarioExpiring6d, want{status: StatusCritical, reachable: true, trusted: true, stage: "7d",
			codes: map[string]Severity{CodeExpiringSoon: SeverityCritical}}},
		{testlab.ScenarioExpiring12h, want{status: StatusCritical, reachable: true, trusted: true, stage: "1d",
			codes: map[string]Severity{CodeExpiringSoon: SeverityCritical}}},
		{testlab.ScenarioShortLivedFresh, want{status: StatusOK, reachable: true, trusted: true, stage: StageNone,
			absent: []string{CodeRenewalOverdue, CodeExpiringSoon}}},
		{testlab.ScenarioShortLivedOverdue, want{status: StatusCritical, reachable: true, trusted: true, stage: "1d",
			codes: map[string]Severity{CodeRenewalOverdue: SeverityWarning, CodeExpiringSoon: SeverityCritical},
			msg:   map[string]string{CodeRenewalOverdue: "day 7 of 9"}}},
		{testlab.ScenarioIntermediateExpiring, want{status: StatusWarning, reachable: true, trusted: true, stage: StageNone,
			codes: map[string]Severity{CodeIntermediateExpiring: SeverityWarning}, absent: []string{CodeRenewalOverdue, CodeExpiringSoon},
			msg: map[string]string{CodeIntermediateExpiring: "tlswatch Expiring Intermediate CA"}}},
		{testlab.ScenarioWrongHost, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeHostnameMismatch: SeverityCritical}, msg: map[string]string{CodeHostnameMismatch: "other.test"}}},
		{testlab.ScenarioWildcard, want{status: StatusOK, reachable: true, trusted: true, absent: []string{CodeHostnameMismatch}}},
		{testlab.ScenarioWildcardTwoLevels, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeHostnameMismatch: SeverityCritical}, msg: map[string]string{CodeHostnameMismatch: "exactly one label"}}},
		{testlab.ScenarioCNOnly, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeCNOnly: SeverityCritical}}},
		{testlab.ScenarioSelfSigned, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeSelfSigned: SeverityCritical}, absent: []string{CodeUntrustedRoot, CodeIncompleteChain}}},
		{testlab.ScenarioUntrustedRoot, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeUntrustedRoot: SeverityCritical, CodeRootInChain: SeverityInfo}, absent: []string{CodeIncompleteChain, CodeSelfSigned},
			complete: "yes"}},
		{testlab.ScenarioPrivateCA, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeUntrustedRoot: SeverityCritical}, msg: map[string]string{CodeUntrustedRoot: "likely"}, absent: []string{CodeIncompleteChain}}},
		{testlab.ScenarioMissingIntermediate, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeIncompleteChain: SeverityCritical}, msg: map[string]string{CodeIncompleteChain: "/issuer.crt"}, absent: []string{CodeUntrustedRoot},
			complete: "no"}},
		{testlab.ScenarioMissingDeadAIA, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeIncompleteChain: SeverityCritical}, msg: map[string]string{CodeIncompleteChain: "likely"}, absent: []string{CodeUntrustedRoot}}},
		{testlab.ScenarioUntrustedDirect, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeUntrustedRoot: SeverityCritical}, msg: map[string]string{CodeUntrustedRoot: "no AIA"}, absent: []string{CodeIncompleteChain, CodeSelfSigned}}},
		{testlab.ScenarioExpiredIntermediate, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeExpiredIntermediate: SeverityCritical}, absent: []string{CodeExpired, CodeUntrustedRoot},
			complete: "yes"}},
		{testlab.ScenarioRootServed, want{status: StatusOK, reachable: true, trusted: true,
			codes: map[string]Severity{CodeRootInChain: SeverityInfo}, absent: []string{CodeChainOrder}}},
		{testlab.ScenarioChainOrder, want{status: StatusWarning, reachable: true, trusted: true,
			codes: map[string]Severity{CodeChainOrder: SeverityWarning}, msg: map[string]string{CodeChainOrder: "unrelated"}}},
		{testlab.ScenarioChainDuplicate, want{status: StatusWarning, reachable: true, trusted: true,
			codes: map[string]Severity{CodeChainOrder: SeverityWarning}, msg: map[string]string{CodeChainOrder: "duplicates"}}},
		{testlab.ScenarioLegacyAccepted, want{status: StatusWarning, reachable: true, trusted: true,
			codes: map[string]Severity{CodeDeprecatedProtocol: SeverityWarning}, msg: map[string]string{CodeDeprecatedProtocol: "TLS 1.0 and TLS 1.1"}}},
		{testlab.ScenarioTLS10Only, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeHandshakeFailed: SeverityCritical, CodeDeprecatedProtocol: SeverityWarning}, msg: map[string]string{CodeHandshakeFailed: "TLS 1.2"}}},
		{testlab.ScenarioRSA1024, want{status: StatusWarning, reachable: true, trusted: true,
			codes: map[string]Severity{CodeWeakKey: SeverityWarning}, msg: map[string]string{CodeWeakKey: "RSA 1024"}}},
		{testlab.ScenarioWeakEC, want{status: StatusWarning, reachable: true, trusted: true,
			codes: map[string]Severity{CodeWeakKey: SeverityWarning}, msg: map[string]string{CodeWeakKey: "P-224"}}},
		{testlab.ScenarioSHA1, want{status: StatusDown, reachable: true, trusted: false,
			codes: map[string]Severity{CodeWeakSignature: SeverityCritical}, absent: []string{CodeUntrustedRoot, CodeIncompleteChain},
			complete: "yes"}},
		{testlab.ScenarioClientCertRequired, want{status: StatusOK, reachable: true, trusted: true,
			codes: map[string]Severity{CodeClientCertRequired: SeverityInfo}, msg: map[string]string{CodeClientCertRequired: "tlswatch Test Root CA"},
			absent: []string{CodeHandshakeFailed}}},
		{testlab.ScenarioRefused, want{status: StatusDown, codes: map[string]Severity{CodeConnectionRefused: SeverityCritical}}},
		{testlab.ScenarioPlainHTTP, want{status: StatusDown, codes: map[string]Severity{CodeNotTLS: SeverityCritical}}},
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			sc := testlab.Start(t, pki, tc.scenario)
			r := runLab(t, sc)
			w := tc.want
			if r.Status != w.status || r.Reachable != w.reachable || r.Trusted != w.trusted {
				t.Errorf("status=%s reachable=%v trusted=%v, want %s %v %v; findings %v",
					r.Status, r.Reachable, r.Trusted, w.status, w.reachable, w.trusted, r.Findings)
			}
			if w.stage != "" && r.ExpiryStage != w.stage {
				t.Errorf("expiry_stage %q, want %q", r.ExpiryStage, w.stage)
			}
			if w.complete != "" && (r.Chain == nil || r.Chain.Complete != (w.complete == "yes")) {
				t.Errorf("chain %+v, want complete %s", r.Chain, w.complete)
			}
			got := findingsOf(r)
			for code, sev := range w.codes {
				f, ok := got[code]
				if !ok {
					t.Errorf("missing %s; got %v", code, codesOf(r))
					continue
				}
				if f.Severity != sev {
					t.Errorf("%s severity %s, want %s", code, f.Severity, sev)
				}
			}
			for code, sub := range w.msg {
				if f, ok := got[code]; ok && !strings.Contains(f.Message, sub) {
					t.Errorf("%s message %q lacks %q", code, f.Message, sub)
				}
			}
			for _, code := range w.absent {
				if _, ok := got[code]; ok {
					t.Errorf("unexpected %s: %v", code, got[code].Message)
				}
			}
			if w.status == StatusOK {
				for _, f := range r.Findings {
					if f.Severity != SeverityInfo {
						t.Errorf("ok report has %s finding %s", f.Severity, f.Code)
					}
				}
			}
			if sc.Cert != nil {
				if r.Leaf == nil {
					t.Fatal("no leaf data although a certificate was served")
				}
				if r.Leaf.SHA256 == "" || r.Leaf.NotAfter.IsZero() || r.TLS == nil || r.Chain == nil {
					t.Errorf("incomplete report: %+v %+v %+v", r.Leaf, r.TLS, r.Chain)
				}
			}
		})
	}
}

func TestRunValidReportFields(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioValid)
	r := runLab(t, sc)
	if r.TLS.Version != "TLS 1.3" || r.TLS.CipherSuite == "" || r.TLS.ALPN != "h2" || r.TLS.OCSPStapled {
		t.Errorf("tls = %+v", r.TLS)
	}
	if r.Chain.Served != 2 || !r.Chain.Complete || len(r.Chain.VerifiedPath) != 3 ||
		!strings.Contains(r.Chain.VerifiedPath[2], "tlswatch Test Root CA") {
		t.Errorf("chain = %+v", r.Chain)
	}
	if r.Leaf.DaysRemaining != 90 || r.Leaf.Key != "ECDSA P-256" || r.Leaf.SignatureAlgorithm != "ECDSA-SHA256" ||
		len(r.Leaf.SANs) != 1 || r.Leaf.SANs[0] != testlab.DefaultHost {
		t.Errorf("leaf = %+v", r.Leaf)
	}
	if r.Target.IP != "127.0.0.1" || r.Target.SNI != testlab.DefaultHost || r.Target.Port != sc.Port {
		t.Errorf("target = %+v", r.Target)
	}
	if !r.CheckedAt.Equal(sc.Now) {
		t.Errorf("checked_at %v, want the pinned clock %v", r.CheckedAt, sc.Now)
	}
	if r.Timing.Total <= 0 || r.Timing.Handshake <= 0 || r.Timing.Total < r.Timing.Handshake {
		t.Errorf("timing = %+v", r.Timing)
	}
	wantProto := map[string][2]bool{"TLS 1.0": {false, true}, "TLS 1.1": {false, true}, "TLS 1.2": {false, false}, "TLS 1.3": {true, true}}
	for _, p := range r.Protocols {
		if w := wantProto[p.Version]; p.Accepted != w[0] || p.Tested != w[1] {
			t.Errorf("protocol %+v, want accepted=%v tested=%v", p, w[0], w[1])
		}
	}
	b, _ := json.Marshal(r)
	for _, k := range []string{`"findings":[`, `"expiry_stage":"none"`, `"timing_ms":`, `"verified_path":[`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

func TestRunExpiredKeepsDates(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioExpired)
	r := runLab(t, sc)
	if r.Leaf == nil || r.Leaf.DaysRemaining != -3 || r.Leaf.NotAfter.IsZero() {
		t.Fatalf("leaf = %+v", r.Leaf)
	}
	// The chain itself is fine: the expiry must not hide it.
	if r.Chain == nil || len(r.Chain.VerifiedPath) != 3 {
		t.Errorf("chain = %+v", r.Chain)
	}
}

func TestRunClockIsAnInput(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioValid)
	opts := labOptions(sc)
	for _, tc := range []struct {
		at    time.Duration
		stage Stage
		code  string
		sev   Severity
	}{
		{60 * 24 * time.Hour, "30d", CodeExpiringSoon, SeverityInfo},
		{80 * 24 * time.Hour, "14d", CodeExpiringSoon, SeverityWarning},
		{85 * 24 * time.Hour, "7d", CodeExpiringSoon, SeverityCritical},
		{91 * 24 * time.Hour, StageExpired, CodeExpired, SeverityCritical},
	} {
		opts.Now = sc.Now.Add(tc.at)
		r, err := Run(context.Background(), labTarget(sc), opts)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := findingsOf(r)[tc.code]
		if r.ExpiryStage != tc.stage || !ok || f.Severity != tc.sev {
			t.Errorf("at +%v: stage %q findings %v; want %q %s/%s", tc.at, r.ExpiryStage, codesOf(r), tc.stage, tc.code, tc.sev)
		}
	}
	// Custom thresholds map severity by day count, and wait for the last
	// third of the lifetime: 69 days left of 90 reach no stage, 29 do.
	opts.Thresholds = DayThresholds(90, 60)
	opts.Now = sc.Now.Add(20 * 24 * time.Hour)
	r, _ := Run(context.Background(), labTarget(sc), opts)
	if _, ok := findingsOf(r)[CodeExpiringSoon]; r.ExpiryStage != StageNone || ok {
		t.Errorf("custom thresholds, 69 days left of 90: stage %q findings %v", r.ExpiryStage, codesOf(r))
	}
	opts.Now = sc.Now.Add(60 * 24 * time.Hour)
	r, _ = Run(context.Background(), labTarget(sc), opts)
	if f := findingsOf(r)[CodeExpiringSoon]; r.ExpiryStage != "60d" || f.Severity != SeverityInfo {
		t.Errorf("custom thresholds, 29 days left of 90: stage %q finding %+v", r.ExpiryStage, f)
	}
}

func TestRunNetworkFailures(t *testing.T) {
	pki := testlab.NewPKI(t)
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		sc := testlab.Start(t, pki, testlab.ScenarioNeverAnswers)
		tgt := labTarget(sc)
		tgt.Timeout = 300 * time.Millisecond
		start := time.Now()
		r, err := Run(context.Background(), tgt, labOptions(sc))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := findingsOf(r)[CodeTimeout]; !ok || r.Status != StatusDown || r.Reachable {
			t.Errorf("findings %v status %s", codesOf(r), r.Status)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("timeout probe took %v", el)
		}
	})
	t.Run("dns_error", func(t *testing.T) {
		t.Parallel()
		tgt := Target{Host: "nowhere.invalid", Port: 443, Timeout: 2 * time.Second}
		r, err := Run(context.Background(), tgt, Options{Resolver: fakeResolver{err: &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}}})
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := findingsOf(r)[CodeDNSError]; !ok || f.Severity != SeverityCritical || r.Status != StatusDown {
			t.Errorf("findings %v", r.Findings)
		}
	})
	t.Run("resolver_used", func(t *testing.T) {
		t.Parallel()
		sc := testlab.Start(t, pki, testlab.ScenarioValid)
		tgt := labTarget(sc)
		tgt.IP = ""
		r, err := Run(context.Background(), tgt, Options{Now: sc.Now, Roots: sc.Roots,
			Resolver: fakeResolver{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != StatusOK || r.Target.IP != "127.0.0.1" {
			t.Errorf("status %s ip %q findings %v", r.Status, r.Target.IP, r.Findings)
		}
	})
	t.Run("reset", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.(*net.TCPConn).SetLinger(0) // RST on close
				buf := make([]byte, 1)
				c.Read(buf)
				c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		r, _ := Run(context.Background(), Target{Host: "tlswatch.test", IP: "127.0.0.1", Port: port, Timeout: 2 * time.Second}, Options{})
		// TCP was accepted: reachable, but no TLS, so down.
		if f, ok := findingsOf(r)[CodeConnectionReset]; !ok || f.Severity != SeverityCritical || !r.Reachable || r.Status != StatusDown {
			t.Errorf("reachable %v status %s findings %v", r.Reachable, r.Status, r.Findings)
		}
	})
}

type fakeResolver struct {
	addrs []netip.Addr
	err   error
}

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f.addrs, f.err
}

func TestRunRejectsUnprobeableTarget(t *testing.T) {
	if _, err := Run(context.Background(), Target{}, Options{}); err == nil {
		t.Fatal("empty target accepted")
	}
	var fe *FieldError
	if _, err := Run(context.Background(), Target{Host: "x.test", Port: 70000}, Options{}); !errors.As(err, &fe) {
		t.Fatalf("bad port: %v", err)
	}
}

func TestRunAIACached(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioMissingIntermediate)
	opts := labOptions(sc)
	opts.Cache = NewCache()
	for i := 0; i < 3; i++ {
		r, err := Run(context.Background(), labTarget(sc), opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := findingsOf(r)[CodeIncompleteChain]; !ok {
			t.Fatalf("run %d: %v", i, codesOf(r))
		}
	}
	if n := sc.AIAHits.Load(); n != 1 {
		t.Errorf("AIA fetched %d times, want 1 (cached)", n)
	}
	// Without a shared Cache each probe fetches again.
	before := sc.AIAHits.Load()
	runLab(t, sc)
	if n := sc.AIAHits.Load() - before; n != 1 {
		t.Errorf("AIA fetched %d times by a probe without a Cache, want 1", n)
	}
}

func TestRunClientCertPresented(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioClientCertRequired)
	cc := pki.Leaf(testlab.LeafOpts{ClientAuth: true, DNSNames: []string{"agent.test"}})
	opts := labOptions(sc)
	opts.ClientCert = &cc
	r, err := Run(context.Background(), labTarget(sc), opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusOK || !strings.Contains(findingsOf(r)[CodeClientCertRequired].Message, "accepted the one presented") {
		t.Errorf("status %s findings %v", r.Status, r.Findings)
	}
}

func TestRunTLS12ClientCertAbort(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	sc := testlab.StartWith(t, pki, cert, &tls.Config{
		MaxVersion: tls.VersionTLS12, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Roots()})
	r := runLab(t, sc)
	if !r.Reachable || r.Leaf == nil || r.TLS.Version != "TLS 1.2" {
		t.Fatalf("reachable=%v leaf=%v tls=%+v", r.Reachable, r.Leaf != nil, r.TLS)
	}
	if f := findingsOf(r)[CodeClientCertRequired]; !strings.Contains(f.Message, "without one it refused the connection") {
		t.Errorf("finding %+v", f)
	}
}

func TestVerifyUsesExplicitRoots(t *testing.T) {
	// Without the lab root in Options.Roots, the valid scenario is an
	// untrusted chain: the system store must not be consulted implicitly
	// for lab roots, and a nil pool is never passed to x509.
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioValid)
	opts := labOptions(sc)
	opts.Roots = x509.NewCertPool()
	r, _ := Run(context.Background(), labTarget(sc), opts)
	if r.Trusted || r.Status != StatusDown {
		t.Errorf("trusted with an empty store: %v", r.Findings)
	}
	if _, ok := findingsOf(r)[CodeUntrustedRoot]; !ok {
		t.Errorf("findings %v", codesOf(r))
	}
}

func TestRunInsecureSuitesOnly(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048})
	sc := testlab.StartWith(t, pki, cert, &tls.Config{
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}})
	r := runLab(t, sc)
	f, ok := findingsOf(r)[CodeHandshakeFailed]
	if !ok || !strings.Contains(f.Message, "TLS_RSA_WITH_AES_128_CBC_SHA") {
		t.Errorf("findings %v", r.Findings)
	}
	if !r.Reachable || r.Trusted || r.Status != StatusDown || r.Leaf == nil {
		t.Errorf("reachable %v trusted %v status %s leaf %v", r.Reachable, r.Trusted, r.Status, r.Leaf != nil)
	}
}

func TestRunInvalidChain(t *testing.T) {
	pki := testlab.NewPKI(t)
	// A client-authentication certificate served as a server certificate.
	cert := pki.Leaf(testlab.LeafOpts{ClientAuth: true})
	sc := testlab.StartWith(t, pki, cert, nil)
	r := runLab(t, sc)
	f, ok := findingsOf(r)[CodeInvalidChain]
	if !ok || !strings.Contains(f.Message, "server authentication") || r.Status != StatusDown {
		t.Errorf("status %s findings %v", r.Status, r.Findings)
	}
}

func TestRunProtocols(t *testing.T) {
	pki := testlab.NewPKI(t)
	type pv = map[string][2]bool // version -> {accepted, tested}
	for _, tc := range []struct {
		scenario string
		want     pv
	}{
		{testlab.ScenarioLegacyAccepted, pv{"TLS 1.0": {true, true}, "TLS 1.1": {true, true}, "TLS 1.2": {false, false}, "TLS 1.3": {true, true}}},
		{testlab.ScenarioTLS10Only, pv{"TLS 1.0": {true, true}, "TLS 1.1": {false, true}, "TLS 1.2": {false, true}, "TLS 1.3": {false, true}}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			r := runLab(t, testlab.Start(t, pki, tc.scenario))
			if len(r.Protocols) != 4 {
				t.Fatalf("protocols %+v", r.Protocols)
			}
			for _, p := range r.Protocols {
				if w := tc.want[p.Version]; p.Accepted != w[0] || p.Tested != w[1] {
					t.Errorf("%+v, want accepted=%v tested=%v", p, w[0], w[1])
				}
			}
		})
	}
	r := runLab(t, testlab.Start(t, pki, testlab.ScenarioTLS10Only))
	if r.TLS == nil || r.TLS.Version != "TLS 1.0" || r.Leaf == nil {
		t.Errorf("tls10 only: %+v", r.TLS)
	}
}

// A probe the caller cancels is not a verdict on the server: Run returns
// ErrCanceled and no finding blames a timeout.
func TestRunCanceled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // hold it open, say nothing
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		c := <-accepted
		defer c.Close()
		cancel()
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	r, err := Run(ctx, Target{Host: "tlswatch.test", IP: "127.0.0.1", Port: port, Timeout: 30 * time.Second}, Options{NoLegacyProtocols: true})
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want ErrCanceled", err)
	}
	if _, ok := findingsOf(r)[CodeTimeout]; ok {
		t.Errorf("a cancelled probe reported a timeout: %v", r.Findings)
	}
	for len(accepted) > 0 {
		(<-accepted).Close()
	}
}
