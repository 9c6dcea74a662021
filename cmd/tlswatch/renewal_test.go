package main

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/pebblelab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// The terminal report says where a short-lived certificate is in its life.
func TestCheckLifetimeProgress(t *testing.T) {
	l := newLab(t)
	day := 24 * time.Hour
	now := l.pki.Now
	for _, tc := range []struct {
		name string
		leaf testlab.LeafOpts
		code int
		want string
	}{
		{"9d_issued_7d_ago", testlab.LeafOpts{NotBefore: now.Add(-7 * day), NotAfter: now.Add(2*day - time.Second)}, exitCritical, "(day 7 of 9, renewal overdue)"},
		{"9d_issued_1d_ago", testlab.LeafOpts{NotBefore: now.Add(-day), NotAfter: now.Add(8*day - time.Second)}, exitOK, "(day 1 of 9)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", "check", l.serve(t, tc.leaf), "--ip", "127.0.0.1", "--ca-file", l.caFile)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.want) {
				t.Errorf("exit %d, want %d; report lacks %q:\n%s%s", r.code, tc.code, tc.want, r.stdout, r.stderr)
			}
		})
	}
}

// check asks a private ACME CA given with --acme-directory for the renewal
// window (Pebble, in process) and checks CAA through --dns-server.
func TestCheckACMEDirectoryAndDNSServer(t *testing.T) {
	lab := pebblelab.Start(t, 90*24*time.Hour)
	dns := testlab.ServeDNS(t, testlab.DNSZone{"example.com": {`0 issue "digicert.com"`}}, false)
	roots := filepath.Join(t.TempDir(), "pebble.pem")
	if err := os.WriteFile(roots, []byte(lab.RootsPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := lab.Issue("ari.example.com")
	_, port, _ := net.SplitHostPort(testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}}))
	lab.Revoke(cert)
	args := []string{"check", "ari.example.com:" + port, "--ip", "127.0.0.1", "--ca-file", roots, "--no-revocation",
		"--acme-directory", lab.DirectoryURL, "--dns-server", dns.Addr, "--json"}

	r := runCLI(t, "", args...)
	var rep probe.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d, stdout %q stderr %q: %v", r.code, r.stdout, r.stderr, err)
	}
	codes := map[string]bool{}
	for _, f := range rep.Findings {
		codes[f.Code] = true
	}
	if r.code != exitWarning || !codes[probe.CodeRenewalSuggested] || !codes[probe.CodeCAAMismatch] || rep.RenewalInfo == nil || rep.CAA == nil {
		t.Errorf("exit %d, findings %v, renewal_info %+v, caa %+v", r.code, rep.Findings, rep.RenewalInfo, rep.CAA)
	}

	r = runCLI(t, "", append(args, "--no-ari", "--no-caa")...)
	rep = probe.Report{}
	json.Unmarshal([]byte(r.stdout), &rep)
	if r.code != exitOK || rep.RenewalInfo != nil || rep.CAA != nil {
		t.Errorf("--no-ari --no-caa: exit %d, findings %v", r.code, rep.Findings)
	}
}

func TestRenewalFlagsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--acme-directory", "http://ca.example/dir"}, "--acme-directory"},
		{[]string{"--acme-directory", "aki:zz=https://ca.example/dir"}, "aki"},
		{[]string{"--dns-server", "127.0.0.1"}, "--dns-server"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			wantBadInput(t, runCLI(t, "", append([]string{"check", "tlswatch.test"}, tc.args...)...), tc.want)
		})
	}
}

// watch add takes days, hours and shares of the lifetime; the watch shows
// them back in canonical form, and expiring shows the share of lifetime
// left.
func TestWatchAddLifetimeThresholds(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(t.TempDir(), "tlswatch.db")
	target := l.serve(t, testlab.LeafOpts{NotAfter: l.days(9)}) // a 90-day certificate, 81 days in
	shared := []string{"--db", db, "--ca-file", l.caFile}
	r := runCLI(t, "", append([]string{"watch", "add", target, "--ip", "127.0.0.1", "--thresholds", "20%, 36h,30,7d"}, shared...)...)
	if r.code != exitOK || !strings.Contains(r.stdout, "thresholds 30d,7d,36h,20%") {
		t.Fatalf("watch add: code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	r = runCLI(t, "", append([]string{"watch", "add", target, "--ip", "127.0.0.1", "--thresholds", "30,7d", "--json"}, shared...)...)
	var w map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &w); err != nil {
		t.Fatalf("watch add --json: %v\n%s", err, r.stdout)
	}
	if got, _ := json.Marshal(w["thresholds_days"]); string(got) != `[30,7]` {
		t.Errorf("thresholds_days = %s", got)
	}
	r = runCLI(t, "", append([]string{"expiring"}, shared...)...)
	if r.code != exitOK || !strings.Contains(r.stdout, "LIFE LEFT") || !strings.Contains(r.stdout, "10.") {
		t.Errorf("expiring: code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	wantBadInput(t, runCLI(t, "", append([]string{"watch", "add", target, "--thresholds", "36x"}, shared...)...), "--thresholds: ", "36x")
}
