package probe

import (
	"context"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/pebblelab"
	"github.com/tlswatch/tlswatch/internal/testlab"
)

// What the renewal checks (ACME ARI and CAA) add to a probe, against Pebble
// and a DNS server on loopback: with the Cache a serve process shares (the
// steady state of a watcher), with a fresh Cache per probe (a first probe,
// or check on the command line), and turned off. Run:
//
//	go test -run '^$' -bench 'RenewalChecks' -count 6 ./probe | tee bench.txt

func benchRenewal(b *testing.B, shared, off bool) {
	lab := pebblelab.Start(b, 90*24*time.Hour)
	dns := testlab.ServeDNS(b, testlab.DNSZone{"example.com": {`0 issue "` + pebblelab.CAAIdentity + `"`}}, false)
	tgt := serveCert(b, lab.Issue("bench.example.com"), "bench.example.com")
	opts := Options{Roots: lab.Roots, CAs: []CA{{Name: "Pebble", ACMEDirectory: lab.DirectoryURL}},
		DNSServer: dns.Addr, NoRevocation: true, NoARI: off, NoCAA: off}
	if shared {
		opts.Cache = NewCache()
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := Run(ctx, tgt, opts)
		if err != nil || r.Status != StatusOK || (!off && (r.RenewalInfo == nil || r.RenewalInfo.Error != "" || r.CAA == nil)) {
			b.Fatalf("status %s err %v findings %v renewal %+v", r.Status, err, codesOf(r), r.RenewalInfo)
		}
	}
}

func BenchmarkRenewalChecksSharedCache(b *testing.B) { benchRenewal(b, true, false) }
func BenchmarkRenewalChecksFreshCache(b *testing.B)  { benchRenewal(b, false, false) }
func BenchmarkRenewalChecksOff(b *testing.B)         { benchRenewal(b, true, true) }
