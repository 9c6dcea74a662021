package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// Deep diagnostics plug into the core probe here, and only here:
//
//   - the postHandshake analysers: revocation and SCTs, trust stores,
//     the CA's renewal window (ARI) and CAA — they need the certificate;
//   - startDeep and mergeDeep, called by run() around the handshakes: the
//     work that needs no certificate and runs beside the main handshake
//     (the other addresses, cipher enumeration, the handshake without
//     SNI), plus what must be said even when no certificate came (the
//     client certificate's expiry, the STARTTLS hint);
//   - upgrade, called by handshake() after each TCP connect: STARTTLS;
//   - the dialClassifiers: the outbound policy's refusal and STARTTLS
//     failures.
//
// Cost by default: revocation one OCSP request (or one CRL download) per
// certificate that names a source, cached until nextUpdate; one extra
// handshake per additional address of the host; for a leaf of a CA that
// publishes ARI, one HTTPS request per certificate per CA-given interval
// and the CA's directory once a day; CAA one DNS query per label up to
// the records, cached for their TTL. Options.Deep adds one handshake per
// accepted cipher suite plus five, and one without SNI.

// postHandshake are the checks that need the certificate, run concurrently
// by runAnalysers in this order of findings.
var postHandshake = []analyser{
	{"revocation", analyseRevocation},
	{"trust_stores", analyseTrustStores},
	{"renewal_info", analyseRenewalInfo},
	{"caa", analyseCAA},
}

// dialClassifiers claim a dial or handshake error before the generic
// classification: the outbound policy's refusal, then a failed STARTTLS
// dialogue.
var dialClassifiers = []func(err error) (Finding, bool){classifyBlocked, classifyStartTLS}

// analyseRevocation checks the staple, OCSP and CRL, and counts SCTs (a
// verified staple may carry some, so the two run together).
func analyseRevocation(ctx context.Context, p *probeRun) []Finding {
	if p.state == nil || len(p.served) == 0 {
		return nil
	}
	in := revocationInput{Leaf: p.served[0], Issuer: p.Issuer(), Staple: p.state.OCSPResponse}
	if chains := p.VerifiedChains(); len(chains) > 0 {
		ch := chains[0]
		for i := 1; i+1 < len(ch); i++ {
			in.Intermediates = append(in.Intermediates, [2]*x509.Certificate{ch[i], ch[i+1]})
		}
	}
	res := checkRevocation(ctx, in, revocationOptions{
		Now:     p.opts.Now,
		Offline: p.opts.NoRevocation,
		Timeout: p.opts.RevocationTimeout,
		Client:  p.opts.HTTPClient, // the operator's egress policy applies
		cache:   p.opts.Cache.rev,
	})
	rev := res.Revocation
	p.report.Revocation = &rev

	scts := collectSCTs(p.state, p.served[0], res.StapleResponse)
	n := len(scts)
	p.report.SCTCount = &n
	p.report.SCTs = scts
	// no_sct is decided in mergeDeep, once the trust stores are known.
	return res.Findings
}

func analyseTrustStores(ctx context.Context, p *probeRun) []Finding {
	if len(p.served) == 0 {
		return nil
	}
	vs, fs := checkTrustStores(trustStoreInput{
		Leaf: p.served[0], Intermediates: p.served[1:], Now: p.opts.Now,
		Configured: p.opts.Roots, Custom: p.opts.CustomRoots, cache: p.opts.Cache.verify,
	})
	p.report.TrustStores = vs
	return fs
}

// deepWork is the certificate-independent deep work of one probe, started
// by startDeep beside the handshakes and merged by mergeDeep.
type deepWork struct {
	wg     sync.WaitGroup
	fanout bool
	others []AddressResult
	scan   cipherScan
	noSNI  *NoSNIResult
}

// startDeep launches the work that needs no certificate: the other
// addresses of the host, and with Options.Deep the cipher enumeration and
// the handshake without SNI.
func (p *probeRun) startDeep(ctx context.Context) *deepWork {
	d := &deepWork{}
	addr := p.addr.String()
	d.fanout = !p.opts.SingleAddress && p.target.IP == "" && len(p.addrs) > 1
	if d.fanout {
		d.wg.Go(func() { d.others = probeAddresses(ctx, p.target, p.opts, p.addrs, p.addr.Addr()) })
	}
	if p.opts.Deep {
		d.wg.Go(func() { d.scan = enumerateCiphers(ctx, p.dialReady(addr), p.target.SNI) })
		d.wg.Go(func() { d.noSNI = handshakeNoSNI(ctx, p.dialReady(addr), p.target.Host, p.opts.ClientCert) })
	}
	return d
}

// mergeDeep waits for the deep work and adds it to the Report, with what
// must be said even when no certificate came (the client certificate's
// expiry, the STARTTLS hint) and what needs every analysis done (no_sct).
func (p *probeRun) mergeDeep(d *deepWork) {
	d.wg.Wait()
	r := p.report
	if d.fanout && len(d.others) > 0 {
		self := addressResult(*r)
		self.IP = p.addr.Addr().String()
		r.Addresses = append([]AddressResult{self}, d.others...)
		p.addFindings(blockedAddressFindings(d.others))
		p.addFindings(backendFindings(r.Addresses))
	}
	if p.opts.Deep {
		p.mergeScan(d.scan)
		if d.noSNI != nil && r.Leaf != nil && d.noSNI.SHA256 != "" {
			d.noSNI.SameAsSNI = d.noSNI.SHA256 == r.Leaf.SHA256
		}
		r.NoSNI = d.noSNI
	}
	if p.opts.ClientCert != nil {
		info, fs := clientCertExpiry(p.opts.ClientCert, p.opts.Now, p.opts.Thresholds)
		r.ClientCert = info
		p.addFindings(fs)
	}
	// no_sct is reported for every certificate without SCTs (the
	// contract's literal rule; it is info and never moves the status);
	// the message says whether CT-enforcing clients care.
	if r.SCTCount != nil {
		p.addFindings(sctFindings(r.SCTs, publiclyTrusted(r.TrustStores)))
	}
	p.addStartTLSHint()
}

// mergeScan adds the protocol and suite enumeration: its protocols replace
// those of the probe's own handshakes, and deprecated_protocol is said again
// from them (the scan also sees SSL 3.0).
func (p *probeRun) mergeScan(scan cipherScan) {
	r := p.report
	r.Protocols, r.CipherSuites, r.NotTested = scan.protos, scan.ciphers, scan.notTested
	profile, fs := cipherVerdict(scan)
	r.MozillaProfile = profile
	p.addFindings(fs)
	if f, ok := deprecatedFinding(scan.protos); ok {
		p.setFinding(f)
	}
}

// publiclyTrusted: the chain verifies against the system store or the
// Mozilla bundle. Browsers enforce CT only for such chains; a private CA
// (trusted through --ca-file alone) is exempt.
func publiclyTrusted(vs []TrustVerdict) bool {
	for _, v := range vs {
		if (v.Store == StoreSystem || v.Store == StoreMozilla) && v.Trusted {
			return true
		}
	}
	return false
}

// addStartTLSHint extends a not_tls or handshake_failed finding on a port
// that usually speaks STARTTLS with the scheme to use instead.
func (p *probeRun) addStartTLSHint() {
	if p.target.Scheme != "" || p.report.Reachable {
		return
	}
	hint := startTLSHint(p.target.Host, p.target.Port)
	if hint == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.report.Findings {
		if f.Code == CodeNotTLS || f.Code == CodeHandshakeFailed {
			p.report.Findings[i].Message = f.Message + "; " + hint
			return
		}
	}
}

// upgrade runs the STARTTLS dialogue on a fresh connection when the target
// has a STARTTLS scheme; a no-op for direct TLS.
func (p *probeRun) upgrade(ctx context.Context, conn net.Conn) error {
	if p.target.Scheme == "" {
		return nil
	}
	name := p.target.SNI
	if name == "" {
		name = p.target.Host
	}
	return startTLS(ctx, conn, p.target.Scheme, name)
}

// classifyStartTLS turns a failed STARTTLS dialogue into a finding.
// Timeouts and resets are left to the generic classification.
func classifyStartTLS(err error) (Finding, bool) {
	var se *startTLSError
	if !errors.As(err, &se) || isTimeout(err) || isReset(err) {
		return Finding{}, false
	}
	proto := strings.ToUpper(se.Proto)
	switch {
	case se.NotOffered:
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("the %s server does not offer STARTTLS (%s: %v): it cannot be reached over TLS this way", proto, se.Step, se.Err)), true
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("the server closed the connection during the %s STARTTLS dialogue (%s)", proto, se.Step)), true
	}
	return NewFinding(CodeNotTLS, fmt.Sprintf("the peer does not speak %s as expected for STARTTLS (%s: %v)", proto, se.Step, se.Err)), true
}
