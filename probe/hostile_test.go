package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// The hostile lab: every probe of a misbehaving server ends within
// its deadline with a classified finding, reads are capped, and healthy
// probes keep completing meanwhile.

const (
	hostileTimeout = 1500 * time.Millisecond
	// hostileBound is generous: the machine running the tests may be busy.
	// A probe that ignored its deadline would hang far longer (the dripper
	// and the hanging servers never stop on their own).
	hostileBound = 10 * time.Second
)

type hostileCase struct {
	name   string
	target Target
	opts   Options
	codes  []string // one of these codes must be present
	msg    string   // ...with this in its message ("" for any)
	check  func(t *testing.T, r ChainReport)
}

func hostileCases(t *testing.T, pki *testlab.PKI) []hostileCase {
	loop := func(addr string) Target {
		h, p := splitLab(t, addr)
		return Target{Host: testlab.DefaultHost, IP: h, Port: p, Timeout: hostileTimeout}
	}
	opts := Options{Now: pki.Now, Roots: pki.Roots()}
	served := func(c tls.Certificate) Target {
		return loop(testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{c}}))
	}
	// A leaf served without its intermediate, whose caIssuers URL is url:
	// the probe must go to AIA to tell an incomplete chain.
	aiaLeaf := func(url string) Target {
		return served(pki.Leaf(testlab.LeafOpts{AIAURL: url, Chain: []*x509.Certificate{}}))
	}
	ocspLeaf := func(mode testlab.OCSPMode) Target {
		return served(pki.Leaf(testlab.LeafOpts{OCSPURL: pki.ServeOCSP(pki.Intermediate, mode, nil)}))
	}
	var streamed atomic.Int64
	return []hostileCase{
		{name: "never_answers", target: loop(testlab.NeverAnswers(t)), opts: opts, codes: []string{CodeTimeout}},
		{name: "drips_one_byte_a_second", target: loop(testlab.Dripper(t)), opts: opts, codes: []string{CodeTimeout}},
		{name: "drips_under_deep_scan", target: loop(testlab.Dripper(t)), opts: withDeep(opts), codes: []string{CodeTimeout}},
		{name: "never_answers_on_many_addresses", target: manyAddrs(loop(testlab.NeverAnswers(t))), opts: withResolver(opts, 8),
			codes: []string{CodeTimeout}},
		{name: "answers_garbage", target: loop(testlab.GarbageServer(t)), opts: opts, codes: []string{CodeNotTLS}},
		{name: "resets_mid_handshake", target: loop(testlab.ResetAfterHello(t)), opts: opts,
			codes: []string{CodeConnectionReset}, check: func(t *testing.T, r ChainReport) {
				if !r.Reachable || r.Trusted || r.Status != StatusDown {
					t.Errorf("reachable %v trusted %v status %s: want TCP reachable, not trusted, down", r.Reachable, r.Trusted, r.Status)
				}
			}},
		{name: "certificate_1MiB", target: served(pki.HugeLeaf(1 << 20)), opts: opts, codes: []string{CodeHandshakeFailed}},
		{name: "chain_of_200", target: served(pki.LongChain(200)), opts: opts, codes: []string{CodeInvalidChain, CodeIncompleteChain, CodeUntrustedRoot},
			check: func(t *testing.T, r ChainReport) {
				if !r.Reachable || r.Leaf == nil || r.Chain == nil || r.Chain.Served != 200 {
					t.Errorf("reachable %v, leaf %v, chain %+v: want the 200 served certificates described", r.Reachable, r.Leaf != nil, r.Chain)
				}
			}},
		{name: "aia_redirects_forever", target: aiaLeaf(testlab.ServeAIARedirectLoop(t, nil)), opts: opts,
			codes: []string{CodeIncompleteChain}, msg: "redirects"},
		{name: "aia_streams_100MiB", target: aiaLeaf(testlab.ServeAIAStream(t, 100<<20, &streamed)), opts: opts,
			codes: []string{CodeIncompleteChain}, msg: "larger than",
			check: func(t *testing.T, r ChainReport) {
				if n := streamed.Load(); n > 20<<20 {
					t.Errorf("the AIA server wrote %d MiB: the read is not capped", n>>20)
				}
			}},
		{name: "aia_hangs", target: aiaLeaf(testlab.ServeAIAHang(t, nil)), opts: opts, codes: []string{CodeIncompleteChain}, msg: "AIA"},
		{name: "ocsp_hangs", target: ocspLeaf(testlab.OCSPHang), opts: opts, codes: []string{CodeOCSPUnavailable}},
		{name: "ocsp_garbage", target: ocspLeaf(testlab.OCSPGarbage), opts: opts, codes: []string{CodeOCSPUnavailable}},
	}
}

func withDeep(o Options) Options { o.Deep = true; return o }

// manyAddrs probes tg by name, so that the resolver of withResolver gives
// it several addresses (the fan-out to every address).
func manyAddrs(tg Target) Target { tg.IP = ""; return tg }

// withResolver answers every name with 127.0.0.1 ... 127.0.0.n.
func withResolver(o Options, n int) Options {
	var res fixedResolver
	for i := 1; i <= n; i++ {
		res = append(res, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	o.Resolver = res
	return o
}

func splitLab(t *testing.T, addr string) (string, int) {
	t.Helper()
	tg, err := ParseTarget(addr, "", "", 0)
	if err != nil {
		t.Fatalf("lab address %q: %v", addr, err)
	}
	return tg.Host, tg.Port
}

func runHostile(t *testing.T, tc hostileCase) {
	start := time.Now()
	r, err := InspectChain(context.Background(), tc.target, tc.opts)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("InspectChain: %v", err)
	}
	t.Logf("%s: %v, status %s, findings %v", tc.name, elapsed.Round(time.Millisecond), r.Status, r.Findings)
	if elapsed > hostileBound {
		t.Errorf("the probe took %v with a %v deadline", elapsed, tc.target.Timeout)
	}
	var hit *Finding
	for i, f := range r.Findings {
		for _, c := range tc.codes {
			if f.Code == c && strings.Contains(f.Message, tc.msg) {
				hit = &r.Findings[i]
			}
		}
	}
	if hit == nil {
		t.Errorf("findings %v: want one of %v with %q in its message", r.Findings, tc.codes, tc.msg)
	}
	if tc.check != nil {
		tc.check(t, r)
	}
}

// TestHostileServers probes every hostile server at once while a healthy
// server is probed again and again: the hostile probes end by their
// deadline with a classified finding, and the healthy ones keep their pace.
func TestHostileServers(t *testing.T) {
	pki := testlab.NewPKI(t)
	cases := hostileCases(t, pki)
	healthy := testlab.Start(t, pki, testlab.ScenarioValid)

	stop := make(chan struct{})
	var healthyRuns atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tg := labTarget(healthy)
			start := time.Now()
			r, err := Run(context.Background(), tg, Options{Now: pki.Now, Roots: pki.Roots(), NoRevocation: true})
			if err != nil || r.Status != StatusOK {
				t.Errorf("healthy probe during the hostile ones: %v, status %s, findings %v", err, r.Status, codesOf(r))
				return
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("a healthy probe took %v while hostile probes ran", d)
			}
			healthyRuns.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	t.Run("hostile", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				runHostile(t, tc)
			})
		}
	})
	close(stop)
	wg.Wait()
	if healthyRuns.Load() == 0 {
		t.Errorf("no healthy probe completed while the hostile ones ran")
	}
	t.Logf("%d healthy probes completed meanwhile", healthyRuns.Load())
}

// TestHostileAIAStreamMemory: an AIA URL that streams 100 MiB costs the
// probe a bounded read, not 100 MiB of memory.
func TestHostileAIAStreamMemory(t *testing.T) {
	pki := testlab.NewPKI(t)
	var written atomic.Int64
	url := testlab.ServeAIAStream(t, 100<<20, &written)
	leaf := pki.Leaf(testlab.LeafOpts{AIAURL: url, Chain: []*x509.Certificate{}})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cr, err := AnalyzePEM(context.Background(), testlab.ChainPEM(leaf), testlab.DefaultHost, Options{Now: pki.Now, Roots: pki.Roots()})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %.1f MiB; the server wrote %.1f MiB; aia %+v", float64(alloc)/(1<<20), float64(written.Load())/(1<<20), cr.AIAFetched)
	if alloc > 16<<20 {
		t.Errorf("allocated %d MiB while fetching a 100 MiB AIA body", alloc>>20)
	}
	if len(cr.AIAFetched) == 0 || !strings.Contains(cr.AIAFetched[0].Error, "larger than") {
		t.Errorf("aia fetches %+v: want a size error", cr.AIAFetched)
	}
}
