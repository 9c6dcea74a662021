package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Protocol and cipher suite enumeration (opt-in: Options.Deep). For each of
// TLS 1.0, 1.1 and 1.2 the client offers every suite Go implements, the
// server picks one, that one is removed and the handshake repeated until the
// server refuses: one handshake per accepted suite plus one per version,
// instead of one per candidate suite. TLS 1.3 suites are not configurable in
// Go and all three are AEAD, so 1.3 is tested for acceptance only.

// dialFunc opens a connection ready for a TLS ClientHello (TCP, plus the
// STARTTLS dialogue where the target needs it).
type dialFunc func(ctx context.Context) (net.Conn, error)

// notTestedByGo lists what Go's TLS client cannot offer, so a deep scan
// cannot tell whether the server accepts it. It goes into Report.NotTested.
var notTestedByGo = []string{
	"SSLv2",
	"SSLv3",
	"export-grade cipher suites",
	"NULL and anonymous (aNULL) cipher suites",
	"DHE (finite-field Diffie-Hellman) cipher suites",
	"CAMELLIA, ARIA, SEED and IDEA cipher suites",
	"TLS 1.3 CCM cipher suites",
}

// deepHandshakeTimeout bounds each enumeration handshake (also bounded by ctx).
const deepHandshakeTimeout = 5 * time.Second

// maxDeepHandshakes caps one enumeration, whatever the server does.
const maxDeepHandshakes = 48

var tlsVersionNames = map[uint16]string{
	tls.VersionTLS10: "TLS 1.0",
	tls.VersionTLS11: "TLS 1.1",
	tls.VersionTLS12: "TLS 1.2",
	tls.VersionTLS13: "TLS 1.3",
}

// cipherWeakness says why a suite is weak ("" when it is not). CBC with
// SHA-1 under ECDHE is not weak by itself (Go and browsers still offer it);
// a server that offers nothing better is, which cipherFindings checks.
func cipherWeakness(name string) string {
	switch {
	case strings.Contains(name, "RC4"):
		return "RC4 is broken (RFC 7465)"
	case strings.Contains(name, "3DES"):
		return "3DES has a 64-bit block (Sweet32)"
	case strings.HasPrefix(name, "TLS_RSA_"):
		return "RSA key exchange: no forward secrecy"
	case strings.Contains(name, "_CBC_SHA256"):
		return "CBC with HMAC-SHA256 has no constant-time implementation (Lucky13)"
	}
	return ""
}

func isAEAD(name string) bool {
	return strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20")
}

// enumerateCiphers finds which protocol versions and which TLS 1.0–1.2
// suites (of those Go implements) the server accepts. sni may be empty;
// clientCert (may be nil) is presented when the server asks for one — a
// server that asks and gets none still counts as accepting the suite it
// chose. Versions are probed concurrently; suites within a version in
// sequence.
func enumerateCiphers(ctx context.Context, dial dialFunc, sni string, clientCert *tls.Certificate) ([]ProtocolInfo, []CipherInfo, []Finding) {
	all := append(tls.CipherSuites(), tls.InsecureCipherSuites()...)
	versions := []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}
	accepted := make([][]CipherInfo, len(versions))
	proto := make([]ProtocolInfo, len(versions))
	var budget = make(chan struct{}, maxDeepHandshakes)
	for i := 0; i < maxDeepHandshakes; i++ {
		budget <- struct{}{}
	}
	var wg sync.WaitGroup
	for i, v := range versions {
		proto[i] = ProtocolInfo{Version: tlsVersionNames[v], Tested: true}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v == tls.VersionTLS13 {
				if _, err := deepHandshake(ctx, dial, sni, clientCert, v, nil, budget); err == nil {
					proto[i].Accepted = true
				}
				return
			}
			var offer []uint16
			for _, s := range all {
				if slices.Contains(s.SupportedVersions, v) {
					offer = append(offer, s.ID)
				}
			}
			for len(offer) > 0 {
				got, err := deepHandshake(ctx, dial, sni, clientCert, v, offer, budget)
				if err != nil {
					return
				}
				proto[i].Accepted = true
				name := tls.CipherSuiteName(got)
				w := cipherWeakness(name)
				accepted[i] = append(accepted[i], CipherInfo{Version: tlsVersionNames[v], Name: name, Weak: w != "", Reason: w})
				n := len(offer)
				offer = slices.DeleteFunc(offer, func(id uint16) bool { return id == got })
				if len(offer) == n {
					return // the server chose a suite we did not offer: stop, do not loop
				}
			}
		}()
	}
	wg.Wait()

	var ciphers []CipherInfo
	for _, a := range accepted {
		ciphers = append(ciphers, a...)
	}
	proto = append([]ProtocolInfo{{Version: "SSL 2.0"}, {Version: "SSL 3.0"}}, proto...)
	return proto, ciphers, cipherFindings(proto, ciphers)
}

// errBudget stops enumeration once maxDeepHandshakes were spent.
var errBudget = errors.New("handshake budget exhausted")

// deepHandshake offers exactly suites at exactly version v and returns the
// suite the server chose. The choice is taken from VerifyConnection, which
// runs once the server's certificate arrived: a server that then aborts for
// want of a client certificate has still accepted the suite.
func deepHandshake(ctx context.Context, dial dialFunc, sni string, clientCert *tls.Certificate, v uint16, suites []uint16, budget chan struct{}) (uint16, error) {
	select {
	case <-budget:
	default:
		return 0, errBudget
	}
	ctx, cancel := context.WithTimeout(ctx, deepHandshakeTimeout)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var captured *tls.ConnectionState
	cfg := lenientConfig(sni, clientCert, &captured, nil)
	cfg.MinVersion, cfg.MaxVersion = v, v
	cfg.CipherSuites = suites
	tc := tls.Client(conn, cfg)
	err = tc.HandshakeContext(ctx)
	st := captured
	if err == nil {
		cs := tc.ConnectionState()
		st = &cs
	}
	if st == nil {
		return 0, err
	}
	if st.Version != v {
		return 0, fmt.Errorf("negotiated %x, asked %x", st.Version, v)
	}
	return st.CipherSuite, nil
}

// cipherFindings: weak_cipher when a weak suite is accepted, or when the best
// the server offers is CBC (no AEAD at TLS 1.2 and no TLS 1.3).
func cipherFindings(proto []ProtocolInfo, ciphers []CipherInfo) []Finding {
	var weak []string
	for _, c := range ciphers {
		if c.Weak && !slices.Contains(weak, c.Name) {
			weak = append(weak, c.Name)
		}
	}
	var fs []Finding
	if len(weak) > 0 {
		msg := fmt.Sprintf("the server accepts %d weak cipher suite(s): %s", len(weak), strings.Join(weak, ", "))
		fs = append(fs, Finding{Code: CodeWeakCipher, Severity: SeverityWarning, Message: msg})
	}
	accepted := func(v string) bool {
		for _, p := range proto {
			if p.Version == v {
				return p.Accepted
			}
		}
		return false
	}
	if accepted("TLS 1.2") && !accepted("TLS 1.3") {
		aead := false
		for _, c := range ciphers {
			if c.Version == "TLS 1.2" && isAEAD(c.Name) {
				aead = true
			}
		}
		if !aead {
			fs = append(fs, Finding{Code: CodeWeakCipher, Severity: SeverityWarning,
				Message: "CBC only: at TLS 1.2 the server accepts no AEAD suite (GCM or ChaCha20-Poly1305) and it does not speak TLS 1.3"})
		}
	}
	return fs
}
