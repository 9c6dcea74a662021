package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ztls "github.com/zmap/zcrypto/tls"
	zx509 "github.com/zmap/zcrypto/x509"
)

// Protocol and cipher suite enumeration (opt-in: Options.Deep), with
// zcrypto's TLS client, made for scanning: it offers any suite ID at any
// version from SSL 3.0 to TLS 1.3 and reads the server's choice from its
// ServerHello, whether or not it could go on with that suite; when it can
// (DHE among others) it also records the server's DH group. For each
// version the client offers every suite, the server picks one, that one is
// removed and the offer repeated until the server refuses: one handshake
// per accepted suite plus one per version and offer. The main probe stays
// on crypto/tls; only this enumeration uses zcrypto, and every connection
// it makes is dialled by the probe (outbound policy, Control, STARTTLS,
// deadline).

// dialFunc opens a connection ready for a TLS ClientHello (TCP, plus the
// STARTTLS dialogue where the target needs it).
type dialFunc func(ctx context.Context) (net.Conn, error)

const (
	// deepHandshakeTimeout bounds each enumeration handshake (also bounded
	// by ctx).
	deepHandshakeTimeout = 5 * time.Second
	// maxDeepHandshakes caps one enumeration, whatever the server does.
	maxDeepHandshakes = 256
	// maxOfferedSuites bounds one ClientHello: some old servers choke on
	// longer suite lists.
	maxOfferedSuites = 128
)

// scanVersions are enumerated, oldest first.
var scanVersions = []uint16{ztls.VersionSSL30, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}

// notTestedByScan is what no client here can offer, so a deep scan cannot
// tell whether the server accepts it. It goes into Report.NotTested.
var notTestedByScan = []string{
	"SSL 2.0",
	"PSK, SRP, Kerberos, FORTEZZA, GOST and vendor-private cipher suites (a server picks them only for clients with matching credentials)",
}

// legacyScanSuites are offered from SSL 3.0 to TLS 1.2: every suite zcrypto
// names, but those of notTestedByScan and the signalling values.
var legacyScanSuites = sync.OnceValue(func() []uint16 {
	var out []uint16
	for id := 0; id <= 0xFFFF; id++ {
		name := ztls.CipherSuiteID(id).String()
		if name == "unknown" || id >= 0x1300 && id <= 0x13FF || strings.HasPrefix(name, "SSL_") ||
			containsAny(name, "_PSK_", "SRP", "KRB5", "FORTEZZA", "GOST", "SCSV", "RENEGO", "OP_PCL") {
			continue
		}
		out = append(out, uint16(id))
	}
	return out
})

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

// cipherScan is what enumerateCiphers found.
type cipherScan struct {
	protos    []ProtocolInfo
	ciphers   []CipherInfo
	notTested []string
}

// scanJob enumerates one version with one offer of suites.
type scanJob struct {
	version uint16
	offer   []uint16
	found   []CipherInfo
}

// enumerateCiphers finds which protocol versions and cipher suites the
// server accepts and the size of its DH group. sni may be empty. Versions
// are probed concurrently, and the offers of a version once its first
// answer shows the version is not refused outright; suites within an
// offer in sequence.
func enumerateCiphers(ctx context.Context, dial dialFunc, sni string) cipherScan {
	var jobs []*scanJob
	s := &scanner{dial: dial, sni: sni, budget: make(chan struct{}, maxDeepHandshakes)}
	for range maxDeepHandshakes {
		s.budget <- struct{}{}
	}
	var wg sync.WaitGroup
	for _, v := range scanVersions {
		offer := legacyScanSuites()
		if v == tls.VersionTLS13 {
			offer = slices.Sorted(maps.Keys(tls13SuiteNames))
		}
		var vjobs []*scanJob
		for c := range slices.Chunk(offer, maxOfferedSuites) {
			vjobs = append(vjobs, &scanJob{version: v, offer: slices.Clone(c)})
		}
		jobs = append(jobs, vjobs...)
		wg.Go(func() { s.enumerateVersion(ctx, vjobs) })
	}
	wg.Wait()
	return s.assemble(ctx, jobs)
}

// enumerateVersion runs the offers of one version: the first hello of the
// first offer tells whether the server speaks the version at all (a
// protocol_version alert says it does not: the other offers are skipped);
// then every offer goes on concurrently.
func (s *scanner) enumerateVersion(ctx context.Context, jobs []*scanJob) {
	got, err := s.hello(ctx, jobs[0].version, jobs[0].offer)
	var opErr *net.OpError
	var alert ztls.Alert
	if errors.As(err, &opErr) && errors.As(opErr.Err, &alert) && alert == ztls.AlertProtocolVersion {
		return
	}
	var wg sync.WaitGroup
	for _, j := range jobs[1:] {
		wg.Go(func() { s.enumerate(ctx, j, helloResult{}, nil) })
	}
	s.enumerate(ctx, jobs[0], got, err)
	wg.Wait()
}

// scanner holds what the handshakes of one enumeration share.
type scanner struct {
	dial      dialFunc
	sni       string
	budget    chan struct{}
	exhausted atomic.Bool
}

// enumerate offers j.offer at j.version until the server refuses, removing
// each suite it picks. first is the answer to the first offer when it was
// already made (its error, or a zero helloResult when not).
func (s *scanner) enumerate(ctx context.Context, j *scanJob, first helloResult, firstErr error) {
	offer := j.offer
	for len(offer) > 0 {
		got, err := first, firstErr
		if got == (helloResult{}) && err == nil {
			got, err = s.hello(ctx, j.version, offer)
		}
		first, firstErr = helloResult{}, nil
		if err != nil || got.version != j.version {
			return
		}
		j.found = append(j.found, cipherInfo(j.version, got.suite, got.dhBits))
		n := len(offer)
		offer = slices.DeleteFunc(offer, func(id uint16) bool { return id == got.suite })
		if len(offer) == n {
			return // the server chose a suite we did not offer: stop, do not loop
		}
	}
}

// cipherInfo describes one accepted suite with its grade.
func cipherInfo(v, id uint16, dhBits int) CipherInfo {
	name := suiteName(id)
	g, why := gradeSuite(id, name)
	ci := CipherInfo{Version: versionName(v), Name: name, Weak: g == gradeNone, Profile: g.String(), DHBits: dhBits}
	if g < gradeModern {
		ci.Reason = why
	}
	return ci
}

func versionName(v uint16) string {
	if v == ztls.VersionSSL30 {
		return "SSL 3.0"
	}
	return tls.VersionName(v)
}

// assemble orders the findings by version and says what was not tested.
func (s *scanner) assemble(ctx context.Context, jobs []*scanJob) cipherScan {
	scan := cipherScan{protos: []ProtocolInfo{{Version: "SSL 2.0"}}, notTested: slices.Clone(notTestedByScan)}
	for _, v := range scanVersions {
		p := ProtocolInfo{Version: versionName(v), Tested: true}
		for _, j := range jobs {
			if j.version == v {
				p.Accepted = p.Accepted || len(j.found) > 0
				scan.ciphers = append(scan.ciphers, j.found...)
			}
		}
		scan.protos = append(scan.protos, p)
	}
	if !s.measureDH(ctx, &scan) {
		scan.notTested = append(scan.notTested, "the DH group size: none of the DHE suites accepted is one zcrypto can complete")
	}
	if s.exhausted.Load() {
		scan.notTested = append(scan.notTested, fmt.Sprintf("suites beyond the first %d handshakes of the enumeration", maxDeepHandshakes))
	}
	return scan
}

// dheSuites are the DHE suites zcrypto completes up to the
// ServerKeyExchange, where the server's DH group is.
var dheSuites = []uint16{0x009E, 0x009F, 0xCCAA, 0x0033, 0x0039, 0x0067, 0x006B, 0x0016, 0x00A2, 0x00A3, 0x0032, 0x0038, 0x0040, 0x006A, 0x0013}

// measureDH fills DHBits of the DHE suites whose handshake did not reveal
// the group, with one more handshake offering the DHE suites zcrypto
// completes. It reports false when DHE was accepted and no size is known.
func (s *scanner) measureDH(ctx context.Context, scan *cipherScan) bool {
	var known, v int
	for _, c := range scan.ciphers {
		if isDHE(c.Name) {
			v = max(v, int(versionOf(c.Version)))
			if c.DHBits > 0 {
				known = c.DHBits
			}
		}
	}
	if v == 0 {
		return true
	}
	if known == 0 {
		if got, err := s.hello(ctx, uint16(min(v, tls.VersionTLS12)), dheSuites); err == nil {
			known = got.dhBits
		}
	}
	for i := range scan.ciphers {
		if isDHE(scan.ciphers[i].Name) && scan.ciphers[i].DHBits == 0 {
			scan.ciphers[i].DHBits = known
		}
	}
	return known > 0
}

func versionOf(name string) uint16 {
	for _, v := range scanVersions {
		if versionName(v) == name {
			return v
		}
	}
	return 0
}

// errBudget stops enumeration once maxDeepHandshakes were spent.
var errBudget = errors.New("handshake budget exhausted")

// helloResult is the server's answer to one ClientHello.
type helloResult struct {
	version, suite uint16
	dhBits         int
}

// hello offers suites at exactly version v and returns the server's
// choice, taken from its ServerHello whether or not the handshake then
// completes (zcrypto cannot go on with every suite it offers, and a server
// may then want a client certificate).
func (s *scanner) hello(ctx context.Context, v uint16, suites []uint16) (helloResult, error) {
	select {
	case <-s.budget:
	default:
		s.exhausted.Store(true)
		return helloResult{}, errBudget
	}
	ctx, cancel := context.WithTimeout(ctx, deepHandshakeTimeout)
	defer cancel()
	conn, err := s.dial(ctx)
	if err != nil {
		return helloResult{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	zc := ztls.Client(conn, scanConfig(s.sni, v, suites))
	herr := zc.HandshakeContext(ctx)
	log := zc.GetHandshakeLog()
	if log == nil || log.ServerHello == nil {
		return helloResult{}, fmt.Errorf("no ServerHello: %w", herr)
	}
	got := helloResult{version: uint16(log.ServerHello.Version), suite: uint16(log.ServerHello.CipherSuite)}
	if sv := log.ServerHello.SupportedVersions; sv != nil {
		got.version = uint16(sv.SelectedVersion)
	}
	if skx := log.ServerKeyExchange; skx != nil && skx.DHParams != nil && skx.DHParams.Prime != nil {
		got.dhBits = skx.DHParams.Prime.BitLen()
	}
	return got, nil
}

// scanConfig is zcrypto's client for one offer: no verification (only the
// server's choices matter), the suites forced onto the wire as given. SSL
// 3.0 needs a hand-built ClientHello: zcrypto's own stops at TLS 1.0.
//
// zcrypto checks the server's chain even when told not to verify it; an
// empty pool of roots makes that check fail at once instead of loading the
// system roots and building paths on every handshake.
func scanConfig(sni string, v uint16, suites []uint16) *ztls.Config {
	cfg := &ztls.Config{ServerName: sni, InsecureSkipVerify: true, RootCAs: zx509.NewCertPool(), ForceSuites: true,
		CipherSuites: suites, MinVersion: v, MaxVersion: v}
	if v == ztls.VersionSSL30 {
		cfg.ClientFingerprintConfiguration = &ztls.ClientFingerprintConfiguration{
			HandshakeVersion: v, CipherSuites: suites, CompressionMethods: []uint8{0}}
	}
	return cfg
}
