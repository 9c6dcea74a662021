package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
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
	// suiteFallback completed only by offering suites Go refuses by
	// default: the server is reachable, but not by agents.
	suiteFallback *attempt
	// certRequest is the server's CertificateRequest, when it sent one.
	certRequest *tls.CertificateRequestInfo

	served   []*x509.Certificate
	analysis *chainAnalysis

	mu sync.Mutex // guards report.Findings while analysers run
}

func newProbeRun(t Target, opts Options) *probeRun {
	return &probeRun{
		target: t,
		opts:   opts,
		report: &Report{
			Target:      TargetInfo{Host: t.Host, Port: t.Port, SNI: t.SNI, IP: t.IP},
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
	p.mu.Lock()
	p.report.Findings = append(p.report.Findings, f)
	p.mu.Unlock()
}

// attempt is one TCP connection plus TLS handshake.
type attempt struct {
	min, max  uint16 // versions offered
	stage     string // where it failed: "connect" or "handshake"
	err       error
	connect   time.Duration
	handshake time.Duration
	state     *tls.ConnectionState // after a completed handshake
	captured  *tls.ConnectionState // from VerifyConnection, even if the handshake then failed
	certReq   *tls.CertificateRequestInfo
}

// version is the protocol version the server chose, 0 when it chose none.
func (a *attempt) version() uint16 {
	switch {
	case a == nil:
		return 0
	case a.state != nil:
		return a.state.Version
	case a.captured != nil:
		return a.captured.Version
	}
	return 0
}

// every suite Go implements, so that a legacy server is found accepting
// TLS 1.0/1.1 whatever its (old) cipher configuration.
var legacySuites = func() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}()

var alpnOffer = []string{"h2", "http/1.1"}

func (p *probeRun) handshake(ctx context.Context, addr string, min, max uint16, suites []uint16) *attempt {
	a := &attempt{min: min, max: max, stage: "connect"}
	d := net.Dialer{Control: p.opts.Control}
	t0 := time.Now()
	conn, err := d.DialContext(ctx, "tcp", addr)
	a.connect = time.Since(t0)
	if err != nil {
		a.err = fmt.Errorf("dial %s: %w", addr, err)
		return a
	}
	defer conn.Close()
	a.stage = "handshake"
	if err := p.upgrade(ctx, conn); err != nil { // STARTTLS (deep.go); no-op for direct TLS
		a.err = fmt.Errorf("starttls with %s: %w", addr, err)
		return a
	}
	cfg := lenientConfig(p.target.SNI, p.opts.ClientCert, &a.captured, &a.certReq)
	cfg.MinVersion, cfg.MaxVersion = min, max
	cfg.CipherSuites = suites
	cfg.NextProtos = alpnOffer
	tc := tls.Client(conn, cfg)
	t1 := time.Now()
	err = tc.HandshakeContext(ctx)
	a.handshake = time.Since(t1)
	if err != nil {
		a.err = fmt.Errorf("tls handshake with %s: %w", addr, err)
		return a
	}
	cs := tc.ConnectionState()
	a.state = &cs
	return a
}

// lenientConfig is the client side of every probe handshake. Verification
// is off on purpose: a broken server must still yield its certificates, and
// verifyChain does the real check afterwards. The peer's state is captured
// as soon as its certificates arrive, so a handshake that then fails (a
// server that demands a client certificate) still describes the server; the
// certificate request is recorded when certReq is not nil. clientCert is
// presented when the server asks; otherwise an empty one, so the server
// decides.
func lenientConfig(sni string, clientCert *tls.Certificate, captured **tls.ConnectionState, certReq **tls.CertificateRequestInfo) *tls.Config {
	return &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS10,
		VerifyConnection: func(cs tls.ConnectionState) error {
			*captured = &cs
			return nil
		},
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if certReq != nil {
				*certReq = cri
			}
			if clientCert != nil {
				return clientCert, nil
			}
			return &tls.Certificate{}, nil
		},
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (p *probeRun) run(ctx context.Context) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.target.Timeout)
	defer cancel()
	defer func() {
		p.report.Timing.Total = ms(time.Since(start))
		finalize(p.report)
	}()

	ip, ok := p.resolve(ctx)
	if !ok {
		return
	}
	p.addr = netip.AddrPortFrom(ip, uint16(p.target.Port))
	p.report.Target.IP = ip.String()
	addr := p.addr.String()
	// Deep diagnostics (deep.go) start beside the main handshake; the
	// returned func merges them after evaluate, before finalize.
	defer p.startDeep(ctx)()

	// The legacy handshake runs beside the main one so that it costs no
	// latency: a modern server rejects its ClientHello at once. It offers
	// TLS 1.0 and 1.1 together; only a server that picks 1.1 earns a
	// second, TLS 1.0-only handshake.
	var legacyCh chan *attempt
	legacyCtx, legacyCancel := context.WithCancel(ctx)
	defer legacyCancel()
	if !p.opts.NoLegacyProtocols {
		legacyCh = make(chan *attempt, 1)
		go func() {
			legacyCh <- p.handshake(legacyCtx, addr, tls.VersionTLS10, tls.VersionTLS11, legacySuites)
		}()
	}

	main := p.handshake(ctx, addr, tls.VersionTLS10, tls.VersionTLS13, nil)
	p.report.Timing.Connect = ms(main.connect)
	p.report.Timing.Handshake = ms(main.handshake)

	var legacy []*attempt
	if legacyCh != nil {
		// A middlebox that drops old ClientHellos must not stretch every
		// probe to the deadline: the legacy handshake gets a bounded grace
		// after the main one.
		grace := 3 * (main.connect + main.handshake)
		if grace < time.Second {
			grace = time.Second
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case a := <-legacyCh:
			legacy = append(legacy, a)
		case <-timer.C:
			legacyCancel()
		}
		if len(legacy) == 1 && legacy[0].version() == tls.VersionTLS11 {
			tctx, tcancel := context.WithTimeout(legacyCtx, grace)
			legacy = append(legacy, p.handshake(tctx, addr, tls.VersionTLS10, tls.VersionTLS10, legacySuites))
			tcancel()
		}
	}
	// A TLS 1.2 server that offers only suites Go refuses by default (RSA
	// key exchange, 3DES) fails the main handshake with an alert; one more
	// handshake offering every suite still gets its certificate. Only
	// failing servers pay for it.
	var rh tls.RecordHeaderError
	if main.err != nil && main.stage == "handshake" && main.captured == nil && !anyCompleted(legacy) &&
		!isTimeout(main.err) && !errors.As(main.err, &rh) && ctx.Err() == nil {
		if fb := p.handshake(ctx, addr, tls.VersionTLS12, tls.VersionTLS12, legacySuites); fb.err == nil {
			p.suiteFallback = fb
		}
	}
	p.evaluate(ctx, main, legacy)
}

func anyCompleted(as []*attempt) bool {
	for _, a := range as {
		if a != nil && a.err == nil {
			return true
		}
	}
	return false
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
	chosen := main
	switch {
	case main.err == nil:
		p.handshakeOK = true
	case main.stage == "connect":
		p.addFinding(classifyNetError(main.err, "connect", p.target.Timeout))
	default:
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
			// The server sent its certificate and a CertificateRequest,
			// then aborted because we had no client certificate (TLS 1.2
			// aborts inside the handshake; TLS 1.3 after our Finished).
			// Its TLS works: this is mTLS policy, reported as
			// client_cert_required, not as an outage of the handshake.
			chosen = main
			p.handshakeOK = true
		} else if !p.handshakeOK {
			p.addFinding(classifyNetError(main.err, "handshake", p.target.Timeout))
		}
	}
	p.report.Reachable = p.handshakeOK

	switch {
	case chosen.state != nil:
		p.state = chosen.state
	case chosen.captured != nil:
		p.state = chosen.captured
	}
	for _, a := range append([]*attempt{main}, legacy...) {
		if a != nil && a.certReq != nil && p.certRequest == nil {
			p.certRequest = a.certReq
		}
	}

	p.fillProtocols(main, legacy)

	if p.state != nil {
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
	}

	if p.certRequest != nil {
		p.add(CodeClientCertRequired, "%s", clientCertMessage(p.certRequest, main))
	}

	if len(p.served) == 0 {
		return
	}
	p.analysis = analyzeChain(ctx, p.served, p.target.Host, p.opts, false)
	p.report.Leaf = p.analysis.leafInfo
	p.report.Chain = p.analysis.chainInfo()
	p.report.ExpiryStage = p.analysis.stage
	for _, f := range p.analysis.findings {
		p.addFinding(f)
	}
	p.report.Trusted = p.handshakeOK && p.suiteFallback == nil && p.state.Version >= tls.VersionTLS12 &&
		p.analysis.chainOK && p.analysis.hostOK && p.analysis.timeOK

	p.runAnalysers(ctx)
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
	var old []string
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13} {
		p.report.Protocols = append(p.report.Protocols, ProtocolInfo{Version: tls.VersionName(v), Accepted: accepted[v], Tested: tested[v]})
		if accepted[v] && v < tls.VersionTLS12 {
			old = append(old, tls.VersionName(v))
		}
	}
	if len(old) > 0 {
		p.add(CodeDeprecatedProtocol, "the server accepts %s; disable them, agents only need TLS 1.2 and 1.3", strings.Join(old, " and "))
	}
}

// clientCertMessage names the CAs the server accepts client certificates
// from.
func clientCertMessage(cri *tls.CertificateRequestInfo, main *attempt) string {
	var names []string
	for _, raw := range cri.AcceptableCAs {
		var rdn pkix.RDNSequence
		if _, err := asn1.Unmarshal(raw, &rdn); err != nil {
			continue
		}
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		names = append(names, n.String())
	}
	msg := "the server requests a client certificate (mTLS)"
	if len(names) > 0 {
		msg += fmt.Sprintf("; acceptable CAs: %s", strings.Join(names, "; "))
	} else {
		msg += "; it names no acceptable CAs"
	}
	if main.err != nil {
		msg += "; without one it aborted the handshake"
		var opErr *net.OpError
		if errors.As(main.err, &opErr) && opErr.Op == "remote error" {
			msg += fmt.Sprintf(" (%v)", opErr.Err)
		}
	} else {
		msg += "; agents without an accepted client certificate are refused"
	}
	return msg
}

// classifyNetError maps a failed dial or handshake to a finding, by error
// type, never by message text.
func classifyNetError(err error, stage string, deadline time.Duration) Finding {
	for _, c := range dialClassifiers {
		if f, ok := c(err); ok {
			return f
		}
	}
	var (
		rh    tls.RecordHeaderError
		opErr *net.OpError
		alert tls.AlertError
	)
	while := "while connecting"
	if stage == "handshake" {
		while = "during the TLS handshake"
	}
	switch {
	case isTimeout(err):
		return NewFinding(CodeTimeout, fmt.Sprintf("no answer %s within the %s deadline", while, deadline))
	case errors.Is(err, context.Canceled):
		return NewFinding(CodeTimeout, fmt.Sprintf("probe cancelled %s", while))
	case errors.Is(err, syscall.ECONNREFUSED):
		return NewFinding(CodeConnectionRefused, "TCP connection refused: nothing listens on that port, or a firewall rejects it")
	case errors.Is(err, syscall.ECONNRESET):
		return NewFinding(CodeConnectionRefused, fmt.Sprintf("connection reset by the peer %s", while))
	case errors.As(err, &rh):
		hint := ""
		if strings.HasPrefix(string(rh.RecordHeader[:]), "HTTP/") {
			hint = " (it answered in plain HTTP)"
		}
		return NewFinding(CodeNotTLS, "the peer answered, but not with TLS"+hint+": this port does not speak TLS")
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("the server aborted the handshake with the alert %q: no common protocol version or cipher suite, or it rejects the SNI", opErr.Err.Error()))
	case errors.As(err, &alert):
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("handshake failed with alert %q", alert.Error()))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return NewFinding(CodeHandshakeFailed, "the server closed the connection during the TLS handshake without an alert (often: no TLS on this port for this SNI, or no common version)")
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return NewFinding(CodeConnectionRefused, fmt.Sprintf("the address is unreachable: %v", errors.Unwrap(err)))
	case stage == "connect":
		return NewFinding(CodeConnectionRefused, fmt.Sprintf("could not connect: %v", err))
	default:
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("TLS handshake failed: %v", err))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// finalize sorts findings (most severe first, stable) and derives the status.
func finalize(r *Report) {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		return r.Findings[i].Severity.Rank() > r.Findings[j].Severity.Rank()
	})
	r.Status = StatusOf(*r)
}

// StatusOf applies the DESIGN.md rule: down when not reachable or not
// trusted, otherwise the highest finding severity (critical, warning), else ok.
// Callers that add findings to a Report recompute Status with it.
func StatusOf(r Report) Status {
	if !r.Reachable || !r.Trusted {
		return StatusDown
	}
	return severityStatus(r.Findings)
}

// severityStatus is the highest finding severity as a Status, ok when none.
func severityStatus(findings []Finding) Status {
	top := 0
	for _, f := range findings {
		if f.Severity.Rank() > top {
			top = f.Severity.Rank()
		}
	}
	switch {
	case top >= SeverityCritical.Rank():
		return StatusCritical
	case top >= SeverityWarning.Rank():
		return StatusWarning
	}
	return StatusOK
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
	out := make([][]Finding, len(postHandshake))
	var wg sync.WaitGroup
	for i, a := range postHandshake {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					out[i] = []Finding{{Code: "internal_error", Severity: SeverityInfo,
						Message: fmt.Sprintf("check %s failed: %v", a.name, r)}}
				}
			}()
			out[i] = a.run(ctx, p)
		}()
	}
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
