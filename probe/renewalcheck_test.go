package probe

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/pebblelab"
	"github.com/tlswatch/tlswatch/internal/testlab"
)

// serveAt serves cert on loopback and returns the Target for host there.
func serveAt(t *testing.T, cert tls.Certificate, host string) Target {
	t.Helper()
	return serveCert(t, cert, host)
}

func serveCert(t testing.TB, cert tls.Certificate, host string) Target {
	t.Helper()
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return Target{Host: host, Port: p, IP: "127.0.0.1", Timeout: 10 * time.Second}
}

// TestRunRenewalSuggestedPebble serves certificates from a real ACME server
// (Pebble, in process) and asks it for their renewal window: quiet while the
// window lies ahead, renewal_suggested once the CA moves it into the past
// (after a revocation). Pebble is given as a bare --acme-directory, so the
// CAA check uses the identity its directory announces, once its ARI endpoint
// has recognised the certificate.
func TestRunRenewalSuggestedPebble(t *testing.T) {
	lab := pebblelab.Start(t, 90*24*time.Hour)
	dns := testlab.ServeDNS(t, testlab.DNSZone{
		"example.com":        {`0 issue "` + pebblelab.CAAIdentity + `"`},
		"denied.example.com": {`0 issue "digicert.com"`},
	}, false)
	opts := Options{Roots: lab.Roots, CAs: []CA{{Name: "Pebble", ACMEDirectory: lab.DirectoryURL}}, DNSServer: dns.Addr, NoRevocation: true}
	ctx := context.Background()

	cert := lab.Issue("ari.example.com")
	tgt := serveAt(t, cert, "ari.example.com")
	r, err := Run(ctx, tgt, opts)
	if err != nil {
		t.Fatal(err)
	}
	ri := r.RenewalInfo
	if !r.Trusted || ri == nil || ri.Error != "" || ri.WindowStart == nil || !ri.WindowStart.After(r.CheckedAt) {
		t.Fatalf("fresh certificate: trusted %v renewal_info %+v findings %v", r.Trusted, ri, codesOf(r))
	}
	if _, ok := findingsOf(r)[CodeRenewalSuggested]; ok || r.Status != StatusOK {
		t.Errorf("fresh certificate: status %s findings %v", r.Status, codesOf(r))
	}
	if c := r.CAA; c == nil || len(c.Names) != 1 || c.Names[0].Permitted == nil || !*c.Names[0].Permitted || c.Names[0].RecordsAt != "example.com" {
		t.Errorf("caa = %+v", c)
	}

	lab.Revoke(cert)
	r, _ = Run(ctx, tgt, opts) // a new private Cache: the CA is asked again
	f, ok := findingsOf(r)[CodeRenewalSuggested]
	if !ok || f.Severity != SeverityWarning || r.Status != StatusWarning || !strings.Contains(f.Message, "Pebble suggests renewing") {
		t.Fatalf("revoked certificate: status %s finding %+v; all %v", r.Status, f, codesOf(r))
	}

	denied := serveAt(t, lab.Issue("denied.example.com"), "denied.example.com")
	r, _ = Run(ctx, denied, opts)
	if f, ok := findingsOf(r)[CodeCAAMismatch]; !ok || !strings.Contains(f.Message, "only digicert.com") || !strings.Contains(f.Message, pebblelab.CAAIdentity) {
		t.Errorf("CAA forbidding Pebble: %+v; all %v", f, codesOf(r))
	}
}

// TestRunCAA checks CAA for a leaf of the lab CA, mapped to CAA names by an
// operator's CA entry, against records served by a DNS server in the test.
func TestRunCAA(t *testing.T) {
	pki := testlab.NewPKI(t)
	dns := testlab.ServeDNS(t, testlab.DNSZone{
		"example.com":        {`0 issue "lab.example"`},
		"denied.example.com": {`0 issue "letsencrypt.org"`, `0 iodef "mailto:sec@example.com"`},
		"example.net":        {`0 issue "lab.example"`, `0 issuewild ";"`},
		"broken.example.com": {testlab.DNSServFail},
	}, false)
	labCA := CA{Name: "tlswatch lab CA", Issuers: []string{"tlswatch lab"}, CAAIdentities: []string{"lab.example"}}
	cases := []struct {
		name     string
		host     string
		sans     []string
		noCAA    bool
		mismatch string // substring of caa_mismatch; "" for none
		errSub   string // substring of the lookup error shown in the report
	}{
		{"permitted_at_parent", "mcp.example.com", []string{"mcp.example.com"}, false, "", ""},
		{"forbidden", "denied.example.com", []string{"denied.example.com"}, false, "only letsencrypt.org", ""},
		{"wildcard_forbidden_by_issuewild", "api.example.net", []string{"*.example.net"}, false, "issuewild records of example.net allow no CA", ""},
		{"exact_name_permitted_wildcard_unused", "www.example.net", []string{"www.example.net", "*.other.example.net"}, false, "", ""},
		{"lookup_fails", "x.broken.example.com", []string{"x.broken.example.com"}, false, "", "SERVFAIL"},
		{"turned_off", "denied.example.com", []string{"denied.example.com"}, true, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := dns.Queries.Load()
			tgt := serveAt(t, pki.Leaf(testlab.LeafOpts{DNSNames: tc.sans}), tc.host)
			r, err := Run(context.Background(), tgt, Options{Now: pki.Now, Roots: pki.Roots(), CAs: []CA{labCA}, DNSServer: dns.Addr, NoCAA: tc.noCAA})
			if err != nil {
				t.Fatal(err)
			}
			f, ok := findingsOf(r)[CodeCAAMismatch]
			if ok != (tc.mismatch != "") || !strings.Contains(f.Message, tc.mismatch) {
				t.Errorf("caa_mismatch %+v, want %q; all %v", f, tc.mismatch, codesOf(r))
			}
			if tc.noCAA {
				if r.CAA != nil || dns.Queries.Load() != before {
					t.Errorf("CAA turned off, yet caa %+v and %d queries", r.CAA, dns.Queries.Load()-before)
				}
				return
			}
			if r.CAA == nil || len(r.CAA.Names) != 1 || !strings.Contains(r.CAA.Names[0].Error, tc.errSub) {
				t.Fatalf("caa = %+v", r.CAA)
			}
			if tc.mismatch == "" && r.Status != StatusOK {
				t.Errorf("status %s, findings %v", r.Status, codesOf(r))
			}
		})
	}
	t.Run("unknown_issuer_not_looked_up", func(t *testing.T) {
		before := dns.Queries.Load()
		tgt := serveAt(t, pki.Leaf(testlab.LeafOpts{DNSNames: []string{"denied.example.com"}}), "denied.example.com")
		r, _ := Run(context.Background(), tgt, Options{Now: pki.Now, Roots: pki.Roots(), DNSServer: dns.Addr})
		if r.CAA != nil || dns.Queries.Load() != before {
			t.Errorf("issuer unknown to tlswatch: caa %+v, %d queries", r.CAA, dns.Queries.Load()-before)
		}
	})
}
