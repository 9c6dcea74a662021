package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// The pair below measures what the probe costs over the bare minimum: one
// full probe (default options) against a bare tls.Dial plus x509 Verify, on
// the same loopback server. Compare with:
//
//	go test -run '^$' -bench 'CheckTLS|BareHandshake' -count 10 ./probe | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest bench.txt

func benchServer(b *testing.B) *testlab.Scenario {
	b.Helper()
	return testlab.Start(b, testlab.NewPKI(b), testlab.ScenarioValid)
}

func BenchmarkCheckTLS(b *testing.B) {
	sc := benchServer(b)
	tgt := labTarget(sc)
	opts := Options{Roots: sc.Roots}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := Run(ctx, tgt, opts)
		if err != nil || r.Status != StatusOK {
			b.Fatalf("status %s err %v findings %v", r.Status, err, r.Findings)
		}
	}
}

func BenchmarkBareHandshake(b *testing.B) {
	sc := benchServer(b)
	roots := sc.Roots
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", sc.Addr, &tls.Config{ServerName: sc.Host, InsecureSkipVerify: true})
		if err != nil {
			b.Fatal(err)
		}
		certs := c.ConnectionState().PeerCertificates
		inter := x509.NewCertPool()
		for _, ic := range certs[1:] {
			inter.AddCert(ic)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: sc.Host}); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
