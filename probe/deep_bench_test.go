package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// The cost of revocation and CT checking on a valid loopback server whose
// certificate names a (local) OCSP responder:
//
//	go test -run '^$' -bench 'BenchmarkDeep' -benchtime 200x ./probe/
//
// Basic: the probe with NoRevocation (no OCSP request). OCSPUncached: a
// fresh OCSP request every probe (a new Cache each time), the
// worst case. OCSPCached: a watch's steady state, answered from the cache
// until nextUpdate. SCT counting runs in all three (it is free).
func benchDeep(b *testing.B, noRevocation, clearCache bool) {
	pki := testlab.NewPKI(b)
	url := pki.ServeOCSP(pki.Intermediate, testlab.OCSPGood, nil)
	cert := pki.Leaf(testlab.LeafOpts{OCSPURL: url})
	addr := testlab.ServeTLS(b, &tls.Config{Certificates: []tls.Certificate{cert}})
	tgt := benchTarget(b, addr)
	opts := Options{Now: pki.Now, Roots: pki.Roots(), NoRevocation: noRevocation, Cache: NewCache()}
	// Warm up: system and Mozilla pools, connection setup paths.
	if r, err := Run(context.Background(), tgt, opts); err != nil || r.Status != StatusOK {
		b.Fatalf("warm-up: %v %s %v", err, r.Status, findingCodes(r.Findings))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if clearCache {
			opts.Cache = NewCache()
		}
		r, _ := Run(context.Background(), tgt, opts)
		if !noRevocation && (r.Revocation == nil || r.Revocation.Status != RevStatusGood) {
			b.Fatalf("revocation %+v", r.Revocation)
		}
	}
}

func benchTarget(b *testing.B, addr string) Target {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Target{Host: testlab.DefaultHost, SNI: testlab.DefaultHost, Port: p, IP: host, Timeout: DefaultTimeout}
}

func BenchmarkDeepBasic(b *testing.B)        { benchDeep(b, true, false) }
func BenchmarkDeepOCSPUncached(b *testing.B) { benchDeep(b, false, true) }
func BenchmarkDeepOCSPCached(b *testing.B)   { benchDeep(b, false, false) }

// The cost of Options.Deep (protocol and cipher suite enumeration plus the
// handshake without SNI) over the same probe without it, on two loopback
// servers: Go's defaults (TLS 1.2-1.3, ECDSA) and a legacy one (TLS 1.0-1.3,
// RSA, every suite Go implements, RC4 and 3DES included):
//
//	go test -run '^$' -bench '^BenchmarkDeepScan' -benchtime 20x -count 6 ./probe/
func BenchmarkDeepScan(b *testing.B) {
	pki := testlab.NewPKI(b)
	var all []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		all = append(all, s.ID)
	}
	servers := []struct {
		name string
		cfg  *tls.Config
	}{
		{"modern", &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}}},
		{"legacy", &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048})},
			MinVersion: tls.VersionTLS10, CipherSuites: all}},
	}
	for _, s := range servers {
		tgt := benchTarget(b, testlab.ServeTLS(b, s.cfg))
		for _, deep := range []bool{false, true} {
			b.Run(fmt.Sprintf("server=%s/deep=%v", s.name, deep), func(b *testing.B) {
				// Connections opened per probe: the cost that does not
				// depend on the machine's load.
				var dials atomic.Int64
				count := func(string, string, syscall.RawConn) error { dials.Add(1); return nil }
				opts := Options{Now: pki.Now, Roots: pki.Roots(), Deep: deep, NoRevocation: true, Cache: NewCache(), Control: count}
				for b.Loop() {
					if r, err := Run(context.Background(), tgt, opts); err != nil || !r.Reachable {
						b.Fatalf("%v %v", err, r.Findings)
					}
				}
				b.ReportMetric(float64(dials.Load())/float64(b.N), "dials/op")
			})
		}
	}
}
