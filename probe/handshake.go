package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

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
	// postErr is what the server said right after a TLS 1.3 handshake in
	// which it asked for a client certificate: it can refuse one only after
	// our Finished. Nil when nothing was refused within the wait.
	postErr error
}

// refusal is how the server refused the connection after asking for a
// client certificate (a TLS 1.2 abort, or a TLS 1.3 alert after the
// handshake); nil when it did not.
func (a *attempt) refusal() error {
	switch {
	case a == nil || a.certReq == nil || a.captured == nil:
		return nil
	case a.err != nil:
		return a.err
	}
	return a.postErr
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
	return p.handshakeAs(ctx, addr, min, max, suites, p.opts.ClientCert)
}

// handshakeAs is handshake presenting clientCert (nil: none) when asked.
func (p *probeRun) handshakeAs(ctx context.Context, addr string, min, max uint16, suites []uint16, clientCert *tls.Certificate) *attempt {
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
	cfg := lenientConfig(p.target.SNI, clientCert, &a.captured, &a.certReq)
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
	if a.certReq != nil {
		a.postErr = p.refusalAfterHandshake(ctx, tc, a.connect)
	}
	return a
}

// refusalAfterHandshake looks, once the server asked for a client
// certificate, for a refusal that comes after the handshake: TLS 1.3 can
// refuse only after our Finished, and some HTTPS servers (nginx) complete
// every handshake and refuse at the HTTP layer. The wait is one round trip
// plus the server's own checks.
func (p *probeRun) refusalAfterHandshake(ctx context.Context, tc *tls.Conn, connect time.Duration) error {
	deadline := time.Now().Add(min(max(500*time.Millisecond, 4*connect), 2*time.Second))
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	tc.SetDeadline(deadline)
	if p.target.Scheme == "" {
		return httpRefusal(tc, net.JoinHostPort(p.target.Host, strconv.Itoa(p.target.Port)))
	}
	if tc.ConnectionState().Version == tls.VersionTLS13 {
		return readRefusal(tc)
	}
	return nil
}

// readRefusal reads once: silence (the server waits for a request), data,
// or a close without an alert (which says nothing about the certificate)
// mean no refusal; an alert or a reset do.
func readRefusal(tc *tls.Conn) error {
	var b [1]byte
	_, err := tc.Read(b[:])
	return refusalError(err)
}

// refusalError keeps the errors that refuse: a TLS alert or a reset.
func refusalError(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" || isReset(err) {
		return err
	}
	return nil
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

// handshakes runs the main handshake (TLS 1.0-1.3, Go's default suites),
// the legacy ones beside it, and the suite fallback when only that can
// tell a server that speaks TLS from one that does not.
func (p *probeRun) handshakes(ctx context.Context) (*attempt, []*attempt) {
	addr := p.addr.String()
	// The legacy handshake runs beside the main one so that it costs no
	// latency: a modern server rejects its ClientHello at once.
	legacyCtx, legacyCancel := context.WithCancel(ctx)
	defer legacyCancel()
	var legacyCh chan *attempt
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
		legacy = p.collectLegacy(legacyCtx, legacyCancel, legacyCh, main)
	}
	// A server that asked for a client certificate and accepted ours may
	// also accept clients without one: one more handshake tells whether it
	// requires one.
	if main.certReq != nil && p.opts.ClientCert != nil && main.err == nil && main.postErr == nil {
		p.withoutCert = p.handshakeAs(ctx, addr, tls.VersionTLS10, tls.VersionTLS13, nil, nil)
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
	return main, legacy
}

// collectLegacy waits for the legacy handshake, which offers TLS 1.0 and
// 1.1 together; only a server that picks 1.1 earns a second, TLS 1.0-only
// handshake. A middlebox that drops old ClientHellos must not stretch every
// probe to the deadline: the legacy handshakes get a bounded grace after
// the main one, then are cancelled.
func (p *probeRun) collectLegacy(ctx context.Context, cancel context.CancelFunc, ch <-chan *attempt, main *attempt) []*attempt {
	grace := max(3*(main.connect+main.handshake), time.Second)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	var legacy []*attempt
	select {
	case a := <-ch:
		legacy = append(legacy, a)
	case <-timer.C:
		cancel()
		return nil
	}
	if legacy[0].version() == tls.VersionTLS11 {
		tctx, tcancel := context.WithTimeout(ctx, grace)
		legacy = append(legacy, p.handshake(tctx, p.addr.String(), tls.VersionTLS10, tls.VersionTLS10, legacySuites))
		tcancel()
	}
	return legacy
}

func anyCompleted(as []*attempt) bool {
	for _, a := range as {
		if a != nil && a.err == nil {
			return true
		}
	}
	return false
}
