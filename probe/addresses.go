package probe

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Every address: a name with several A/AAAA records is served by several
// machines, and a load balancer with one stale backend is a classic partial
// outage (one request in N fails). Each other address gets its own probe,
// pinned with Target.IP, and the verdicts are compared.

const (
	// maxFanoutAddresses bounds how many addresses one probe visits.
	maxFanoutAddresses = 8
	// fanoutConcurrency bounds simultaneous per-address probes.
	fanoutConcurrency = 4
)

// probeAddresses probes each address in addrs (other than skip) with t
// pinned to it. Sub-probes are lean: no fan-out, no deep checks, no
// revocation requests and no legacy-protocol handshakes, so that the
// comparison costs one handshake per address.
func probeAddresses(ctx context.Context, t Target, opts Options, addrs []netip.Addr, skip netip.Addr) []AddressResult {
	var todo []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a == skip || slices.Contains(todo, a) {
			continue
		}
		if len(todo) >= maxFanoutAddresses-1 {
			break
		}
		todo = append(todo, a)
	}
	out := make([]AddressResult, len(todo))
	sem := make(chan struct{}, fanoutConcurrency)
	var wg sync.WaitGroup
	for i, a := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				out[i] = AddressResult{IP: a.String(), Status: StatusDown, Error: "not probed: the deadline passed"}
				return
			}
			sub := t
			sub.IP = a.String()
			if dl, ok := ctx.Deadline(); ok {
				sub.Timeout = max(time.Until(dl), time.Millisecond)
			}
			so := opts
			so.SingleAddress, so.Deep, so.NoRevocation, so.NoLegacyProtocols = true, false, true, true
			rep, err := Run(ctx, sub, so)
			if err != nil {
				out[i] = AddressResult{IP: a.String(), Status: StatusDown, Error: err.Error()}
				return
			}
			out[i] = addressResult(rep)
		}()
	}
	wg.Wait()
	return out
}

// addressResult condenses a Report to its per-address verdict.
func addressResult(r Report) AddressResult {
	ar := AddressResult{IP: r.Target.IP, Status: StatusOf(r), Reachable: r.Reachable, Trusted: r.Trusted}
	if r.Leaf != nil {
		ar.SHA256 = r.Leaf.SHA256
		na := r.Leaf.NotAfter
		ar.NotAfter = &na
	}
	for _, f := range r.Findings {
		if !slices.Contains(ar.Codes, f.Code) {
			ar.Codes = append(ar.Codes, f.Code)
		}
		if !r.Reachable && ar.Error == "" && f.Severity == SeverityCritical {
			ar.Error = f.Message
		}
	}
	return ar
}

// backendFindings compares the per-address verdicts. An address family that
// fails entirely (a host with AAAA records whose IPv6 side is down, or a
// server bound to 127.0.0.1 behind "localhost") is reported per address but
// is not a finding on its own: clients fall back to the other family. A
// dead address beside a live one of the same family, a different
// certificate, or a different trust verdict is.
func backendFindings(results []AddressResult) []Finding {
	if len(results) < 2 {
		return nil
	}
	is4 := func(ip string) bool { a, err := netip.ParseAddr(ip); return err == nil && a.Unmap().Is4() }
	reachable := map[bool]bool{} // family (is4) -> some address reachable
	for _, r := range results {
		if r.Reachable {
			reachable[is4(r.IP)] = true
		}
	}
	var diffs []string
	var ref *AddressResult
	for i := range results {
		r := &results[i]
		if slices.Contains(r.Codes, CodeTargetBlocked) {
			continue // blockedAddressFindings says it
		}
		if !r.Reachable {
			if reachable[is4(r.IP)] {
				diffs = append(diffs, fmt.Sprintf("%s does not complete a TLS handshake (%s)", r.IP, firstNonEmpty(r.Error, strings.Join(r.Codes, ", "))))
			}
			continue
		}
		if ref == nil {
			ref = r
			continue
		}
		if r.SHA256 != ref.SHA256 {
			diffs = append(diffs, fmt.Sprintf("%s serves certificate %s…, %s serves %s…", ref.IP, short(ref.SHA256), r.IP, short(r.SHA256)))
		} else if r.Trusted != ref.Trusted {
			diffs = append(diffs, fmt.Sprintf("%s is trusted=%v but %s is trusted=%v", ref.IP, ref.Trusted, r.IP, r.Trusted))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return []Finding{NewFinding(CodeInconsistentBackends,
		fmt.Sprintf("the %d addresses of this host disagree: %s; some clients fail depending on which address they reach", len(results), strings.Join(diffs, "; ")))}
}

// blockedAddressFindings reports the addresses of the host that the
// outbound policy refused: a name that also resolves to, say, the cloud
// metadata address is either misconfigured or an attempt to make tlswatch
// connect there.
func blockedAddressFindings(results []AddressResult) []Finding {
	var ips []string
	for _, r := range results {
		if slices.Contains(r.Codes, CodeTargetBlocked) {
			ips = append(ips, r.IP)
		}
	}
	if len(ips) == 0 {
		return nil
	}
	return []Finding{NewFinding(CodeTargetBlocked, fmt.Sprintf(
		"the host also resolves to %s, which the outbound policy refuses: tlswatch did not connect there, and clients that pick it reach something other than this server",
		strings.Join(ips, ", ")))}
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	if h == "" {
		return "(none)"
	}
	return h
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// NoSNIResult is what the server presents to a client that sends no SNI
// (old clients, some health checkers, IP-based access).
type NoSNIResult struct {
	Reachable bool   `json:"reachable"`
	Subject   string `json:"subject,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	// SameAsSNI: the same certificate as with SNI.
	SameAsSNI bool `json:"same_as_sni"`
	// MatchesHost: the certificate is valid for the target host.
	MatchesHost bool   `json:"matches_host"`
	Error       string `json:"error,omitempty"`
}

// handshakeNoSNI completes one handshake without server_name. Like the
// cipher scan, it takes the certificate as soon as it arrives, so a server
// that then wants a client certificate is still described.
func handshakeNoSNI(ctx context.Context, dial dialFunc, host string, clientCert *tls.Certificate) *NoSNIResult {
	ctx, cancel := context.WithTimeout(ctx, deepHandshakeTimeout)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return &NoSNIResult{Error: err.Error()}
	}
	defer conn.Close()
	var captured *tls.ConnectionState
	tc := tls.Client(conn, lenientConfig("", clientCert, &captured, nil))
	if err := tc.HandshakeContext(ctx); err != nil && captured == nil {
		return &NoSNIResult{Error: err.Error()}
	}
	res := &NoSNIResult{Reachable: true}
	if captured != nil && len(captured.PeerCertificates) > 0 {
		c := captured.PeerCertificates[0]
		sum := sha256.Sum256(c.Raw)
		res.SHA256 = hex.EncodeToString(sum[:])
		res.Subject = c.Subject.String()
		res.MatchesHost = c.VerifyHostname(host) == nil
	}
	return res
}

// dialReady opens a TCP connection to addr through the probe's Control hook
// and performs the STARTTLS dialogue when the target needs it.
func (p *probeRun) dialReady(addr string) dialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Control: p.opts.Control}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if err := p.upgrade(ctx, c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}
