package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// probeRun is the state of one probe. The postHandshake analysers read it
// and add to the Report.
type probeRun struct {
	target Target
	opts   Options
	report *Report

	// addrs are every address the host resolved to; addr is the one dialled.
	addrs []netip.Addr
	addr  netip.AddrPort

	// state is the connection the Report describes: the completed main
	// handshake, else a completed legacy one, else what VerifyConnection
	// captured before the handshake failed. Nil when no certificate came.
	state *tls.ConnectionState
	// handshakeOK: the TLS handshake finished at the protocol level.
	handshakeOK bool
	// resetAfterConnect: TCP connected, then the peer reset the connection
	// during the handshake; the Report calls that reachable.
	resetAfterConnect bool
	// suiteFallback completed only by offering suites Go refuses by
	// default: the server is reachable, but not by agents.
	suiteFallback *attempt
	// certRequest is the server's CertificateRequest, when it sent one, and
	// certAttempt the attempt that got it.
	certRequest *tls.CertificateRequestInfo
	certAttempt *attempt
	// withoutCert is the handshake without a client certificate, made when
	// the server accepted the one presented.
	withoutCert *attempt

	served   []*x509.Certificate
	analysis *chainAnalysis

	mu sync.Mutex // guards report.Findings while analysers run
}

func newProbeRun(t Target, opts Options) *probeRun {
	return &probeRun{
		target: t,
		opts:   opts,
		report: &Report{
			Target:      TargetInfo{Host: t.Host, Port: t.Port, SNI: t.SNI, IP: t.IP, Scheme: t.Scheme},
			CheckedAt:   opts.Now.UTC(),
			ExpiryStage: StageNone,
			Findings:    []Finding{},
		},
	}
}

// add records a finding with the code table's severity.
func (p *probeRun) add(code, format string, args ...any) {
	p.addFinding(NewFinding(code, fmt.Sprintf(format, args...)))
}

func (p *probeRun) addFinding(f Finding) {
	p.addFindings([]Finding{f})
}

// joinAnd lists words as "a, b and c".
func joinAnd(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// setFinding replaces the finding of the same code, or adds it.
func (p *probeRun) setFinding(f Finding) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.report.Findings {
		if p.report.Findings[i].Code == f.Code {
			p.report.Findings[i] = f
			return
		}
	}
	p.report.Findings = append(p.report.Findings, f)
}

func (p *probeRun) addFindings(fs []Finding) {
	p.mu.Lock()
	p.report.Findings = append(p.report.Findings, fs...)
	p.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// run is the whole probe, in order: resolve, handshake (the deep work that
// needs no certificate runs beside), evaluate, merge the deep results,
// finalize.
func (p *probeRun) run(ctx context.Context) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.target.Timeout)
	defer cancel()
	if ip, ok := p.resolve(ctx); ok {
		p.probeAddress(ctx, ip)
	}
	p.report.Timing.Total = ms(time.Since(start))
	finalize(p.report)
}

// probeAddress probes the resolved address ip.
func (p *probeRun) probeAddress(ctx context.Context, ip netip.Addr) {
	p.addr = netip.AddrPortFrom(ip, uint16(p.target.Port))
	p.report.Target.IP = ip.String()
	deep := p.startDeep(ctx)
	main, legacy := p.handshakes(ctx)
	p.evaluate(ctx, main, legacy)
	p.mergeDeep(deep)
}

// resolve returns the address to dial, adding a finding when there is none.
func (p *probeRun) resolve(ctx context.Context) (netip.Addr, bool) {
	if p.target.IP != "" {
		a, _ := netip.ParseAddr(p.target.IP)
		p.addrs = []netip.Addr{a}
		return a.Unmap(), true
	}
	if a, err := netip.ParseAddr(p.target.Host); err == nil {
		p.addrs = []netip.Addr{a}
		return a.Unmap(), true
	}
	t0 := time.Now()
	addrs, err := p.opts.Resolver.LookupNetIP(ctx, "ip", p.target.Host)
	p.report.Timing.DNS = ms(time.Since(t0))
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		var dnsErr *net.DNSError
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			// The caller gave up: Run reports ErrCanceled, not a verdict.
		case ctx.Err() != nil:
			p.add(CodeTimeout, "resolving %s did not finish within the %s deadline", p.target.Host, p.target.Timeout)
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			p.add(CodeDNSError, "%s does not resolve: no such host", p.target.Host)
		default:
			p.add(CodeDNSError, "resolving %s failed: %v", p.target.Host, err)
		}
		return netip.Addr{}, false
	}
	p.addrs = addrs
	return addrs[0].Unmap(), true
}

// evaluate turns the handshake attempts into findings and analyses the
// certificates received.
func (p *probeRun) evaluate(ctx context.Context, main *attempt, legacy []*attempt) {
	chosen := p.connectionVerdict(main, legacy)
	p.report.Reachable = p.handshakeOK || p.resetAfterConnect
	p.describeConnection(chosen, main, legacy)
	p.clientCertVerdict()
	if len(p.served) == 0 {
		return
	}
	p.analysis = analyzeChain(ctx, p.served, p.target.Host, p.opts, false)
	p.report.Leaf = p.analysis.leafInfo
	p.report.Chain = p.analysis.chainInfo()
	p.report.ExpiryStage = p.analysis.stage
	p.addFindings(p.analysis.findings)
	p.report.Trusted = p.handshakeOK && p.suiteFallback == nil && p.state.Version >= tls.VersionTLS12 &&
		p.analysis.chainOK && p.analysis.hostOK && p.analysis.timeOK
	p.runAnalysers(ctx)
}

// connectionVerdict decides whether TLS works at the protocol level
// (handshakeOK), reports why not, and returns the attempt that describes
// the server best.
func (p *probeRun) connectionVerdict(main *attempt, legacy []*attempt) *attempt {
	switch {
	case main.err == nil:
		p.handshakeOK = true
		return main
	case main.stage == "connect":
		if !errors.Is(main.err, context.Canceled) {
			p.addFinding(classifyNetError(main.err, "connect", p.target.Timeout))
		}
		return main
	}
	chosen := main
	// Prefer a legacy handshake that completed: the server speaks TLS,
	// just not a version agents accept.
	for _, a := range legacy {
		if a != nil && a.err == nil {
			chosen = a
			p.handshakeOK = true
			break
		}
	}
	if !p.handshakeOK && p.suiteFallback != nil {
		chosen = p.suiteFallback
		p.handshakeOK = true
		p.add(CodeHandshakeFailed, "the server only accepts cipher suites that agent runtimes refuse by default (it chose %s): enable ECDHE suites with AES-GCM or ChaCha20",
			tls.CipherSuiteName(chosen.state.CipherSuite))
	}
	if main.certReq != nil && main.captured != nil {
		// The server sent its certificate and a CertificateRequest, then
		// aborted because we had no client certificate (TLS 1.2 aborts
		// inside the handshake; TLS 1.3 after our Finished). Its TLS works:
		// this is mTLS policy, reported as client_cert_required, not as an
		// outage of the handshake.
		p.handshakeOK = true
		return main
	}
	if !p.handshakeOK && !errors.Is(main.err, context.Canceled) {
		f := classifyNetError(main.err, "handshake", p.target.Timeout)
		p.resetAfterConnect = f.Code == CodeConnectionReset
		p.addFinding(f)
	}
	return chosen
}

// describeConnection fills the Report's tls and protocols from the
// attempts and keeps the served certificates.
func (p *probeRun) describeConnection(chosen, main *attempt, legacy []*attempt) {
	switch {
	case chosen.state != nil:
		p.state = chosen.state
	case chosen.captured != nil:
		p.state = chosen.captured
	}
	for _, a := range append([]*attempt{main}, legacy...) {
		if a != nil && a.certReq != nil && p.certRequest == nil {
			p.certRequest, p.certAttempt = a.certReq, a
		}
	}
	p.fillProtocols(main, legacy)
	if p.state == nil {
		return
	}
	cs := p.state
	p.report.TLS = &TLSInfo{
		Version:     tls.VersionName(cs.Version),
		CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
		ALPN:        cs.NegotiatedProtocol,
		OCSPStapled: len(cs.OCSPResponse) > 0,
	}
	p.served = cs.PeerCertificates
	if p.handshakeOK && cs.Version < tls.VersionTLS12 {
		p.add(CodeHandshakeFailed, "the server only speaks %s: agent runtimes (Go, Python, Node.js, the MCP SDKs) require TLS 1.2 or newer, so every agent fails the handshake", tls.VersionName(cs.Version))
	}
	p.negotiatedSuite(cs)
}

// negotiatedSuite: without the deep scan, the suite the server chose for a
// client offering ECDHE with AEAD still says something: CBC or no forward
// secrecy is worth an info (the deep scan grades every suite instead).
func (p *probeRun) negotiatedSuite(cs *tls.ConnectionState) {
	if p.opts.Deep || !p.handshakeOK || p.suiteFallback != nil || cs.Version != tls.VersionTLS12 {
		return
	}
	name := tls.CipherSuiteName(cs.CipherSuite)
	if g, why := gradeSuite(cs.CipherSuite, name); g < gradeIntermediate {
		p.addFinding(Finding{Code: CodeWeakCipher, Severity: SeverityInfo, Message: fmt.Sprintf(
			"the server chose %s for a client that offers ECDHE with AES-GCM and ChaCha20-Poly1305: %s; a deep check (--deep) lists every suite it accepts", name, why)})
	}
}

func (p *probeRun) fillProtocols(main *attempt, legacy []*attempt) {
	accepted := map[uint16]bool{}
	tested := map[uint16]bool{}
	// The server picks the highest version it shares with an offer, so an
	// offer [min, max] answered with v says v is accepted and everything
	// above v (up to max) is not; a refused offer rejects the whole range.
	note := func(a *attempt) {
		if a == nil || (a.err != nil && (a.stage == "connect" || isTimeout(a.err))) {
			return
		}
		v := a.version()
		for x := a.min; x <= a.max; x++ {
			switch {
			case v != 0 && x == v:
				tested[x], accepted[x] = true, true
			case v == 0 || x > v:
				tested[x] = true
			}
		}
	}
	note(main)
	for _, a := range legacy {
		note(a)
	}
	if len(tested) == 0 {
		return
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13} {
		p.report.Protocols = append(p.report.Protocols, ProtocolInfo{Version: tls.VersionName(v), Accepted: accepted[v], Tested: tested[v]})
	}
	if f, ok := deprecatedFinding(p.report.Protocols); ok {
		p.addFinding(f)
	}
}

// deprecatedFinding is deprecated_protocol for the versions below TLS 1.2
// accepted in protos.
func deprecatedFinding(protos []ProtocolInfo) (Finding, bool) {
	var old []string
	for _, pi := range protos {
		if pi.Accepted && (pi.Version == "SSL 3.0" || pi.Version == "TLS 1.0" || pi.Version == "TLS 1.1") {
			old = append(old, pi.Version)
		}
	}
	if len(old) == 0 {
		return Finding{}, false
	}
	msg := fmt.Sprintf("the server accepts %s; disable them, agents only need TLS 1.2 and 1.3", joinAnd(old))
	if slices.Contains(old, "SSL 3.0") {
		msg += " (SSL 3.0 is broken: POODLE)"
	}
	return NewFinding(CodeDeprecatedProtocol, msg), true
}

// analyser is a post-handshake check (revocation and SCTs, trust stores).
// Analysers run concurrently after the certificate analysis, only when a
// certificate was received. Each MUST honour ctx, MUST only write the
// Report fields it owns, and returns its findings, which are appended in
// the order of the postHandshake list.
type analyser struct {
	name string
	run  func(ctx context.Context, p *probeRun) []Finding
}

func (p *probeRun) runAnalysers(ctx context.Context) {
	if len(postHandshake) == 0 {
		return
	}
	out := make([][]Finding, len(postHandshake))
	run := func(i int, a analyser) {
		defer func() {
			if r := recover(); r != nil {
				out[i] = []Finding{{Code: "internal_error", Severity: SeverityInfo,
					Message: fmt.Sprintf("check %s failed: %v", a.name, r)}}
			}
		}()
		out[i] = a.run(ctx, p)
	}
	// The last analyser runs on this goroutine: one goroutine fewer on the
	// latency path of every probe.
	var wg sync.WaitGroup
	last := len(postHandshake) - 1
	for i, a := range postHandshake[:last] {
		wg.Go(func() { run(i, a) })
	}
	run(last, postHandshake[last])
	wg.Wait()
	for _, fs := range out {
		for _, f := range fs {
			p.addFinding(f)
		}
	}
}

// Accessors for analysers.

// Served returns the certificates as the server sent them (leaf first).
func (p *probeRun) Served() []*x509.Certificate { return p.served }

// VerifiedChains returns the verified chains (nil when none).
func (p *probeRun) VerifiedChains() [][]*x509.Certificate {
	if p.analysis == nil {
		return nil
	}
	return p.analysis.chains
}

// Issuer returns the leaf's issuer from the verified (or AIA-completed)
// path, else from the served chain; nil when unknown.
func (p *probeRun) Issuer() *x509.Certificate {
	if p.analysis == nil {
		return nil
	}
	return p.analysis.leafIssuer()
}
