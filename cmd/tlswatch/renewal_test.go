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
