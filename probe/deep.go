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
//   - the postHandshake analysers: revocation and SCTs, trust stores —
//     they need the certificate;
//   - startDeep, called by run() once the host is resolved: the work that
//     needs no certificate and runs beside the main handshake (the other
//     addresses, cipher enumeration, the handshake without SNI), plus what
//     must be said even when no certificate came (the client certificate's
//     expiry, the STARTTLS hint);
//   - upgrade, called by handshake() after each TCP connect: STARTTLS;
//   - the dialClassifiers: the outbound policy's refusal and STARTTLS
//     failures.
//
// Cost by default: revocation one OCSP request (or one CRL download) per
// certificate that names a source, cached until nextUpdate; one extra
// handshake per additional address of the host. Options.Deep adds one
// handshake per accepted cipher suite plus five, and one without SNI.

// postHandshake are the checks that need the certificate, run concurrently
// by runAnalysers in this order of findings.
var postHandshake = []analyser{
	{"revocation", analyseRevocation},
	{"trust_stores", analyseTrustStores},
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
	in := RevocationInput{Leaf: p.served[0], Issuer: p.Issuer(), Staple: p.state.OCSPResponse}
	if chains := p.VerifiedChains(); len(chains) > 0 {
		ch := chains[0]
		for i := 1; i+1 < len(ch); i++ {
			in.Intermediates = append(in.Intermediates, [2]*x509.Certificate{ch[i], ch[i+1]})
		}
	}
	res := CheckRevocation(ctx, in, RevocationOptions{
		Now:     p.opts.Now,
		Offline: p.opts.NoRevocation,
		Timeout: p.opts.RevocationTimeout,
		Client:  p.opts.HTTPClient, // the operator's egress policy applies
		cache:   p.opts.Cache.rev,
	})
	rev := res.Revocation
	p.report.Revocation = &rev

	scts := CollectSCTs(p.state, p.served[0], res.StapleResponse)
	n := len(scts)
	p.report.SCTCount = &n
	p.report.SCTs = scts
	// no_sct is decided in startDeep's merge, once the trust stores are known.
	return res.Findings
}

func analyseTrustStores(ctx context.Context, p *probeRun) []Finding {
	if len(p.served) == 0 {
		return nil
	}
	vs, fs := CheckTrustStores(TrustStoreInput{
		Leaf: p.served[0], Intermediates: p.served[1:], Now: p.opts.Now,
		Configured: p.opts.Roots, Custom: p.opts.CustomRoots, cache: p.opts.Cache.verify,
	})
	p.report.TrustStores = vs
	return fs
}

// startDeep launches the certificate-independent deep work and returns the
// function that waits for it and merges it into the Report; run() defers
// that function so that it runs after evaluate and before finalize.
func (p *probeRun) startDeep(ctx context.Context) func() {
	var wg sync.WaitGroup
	addr := p.addr.String()

	var others []AddressResult
	fanout := !p.opts.SingleAddress && p.target.IP == "" && len(p.addrs) > 1
	if fanout {
		wg.Add(1)
		go func() {
			defer wg.Done()
			others = probeAddresses(ctx, p.target, p.opts, p.addrs, p.addr.Addr())
		}()
	}

	var protos []ProtocolInfo
	var ciphers []CipherInfo
	var cipherFs []Finding
	var noSNI *NoSNIResult
	if p.opts.Deep {
		wg.Add(2)
		go func() {
			defer wg.Done()
			protos, ciphers, cipherFs = EnumerateCiphers(ctx, p.dialReady(addr), p.target.SNI, p.opts.ClientCert)
		}()
		go func() {
			defer wg.Done()
			noSNI = handshakeNoSNI(ctx, p.dialReady(addr), p.target.Host, p.opts.ClientCert)
		}()
	}

	return func() {
		wg.Wait()
		r := p.report
		if fanout && len(others) > 0 {
			self := addressResult(*r)
			self.IP = p.addr.Addr().String()
			r.Addresses = append([]AddressResult{self}, others...)
			for _, f := range append(blockedAddressFindings(others), backendFindings(r.Addresses)...) {
				p.addFinding(f)
			}
		}
		if p.opts.Deep {
			r.Protocols = protos
			r.CipherSuites = ciphers
			r.NotTested = NotTestedByGo
			for _, f := range cipherFs {
				p.addFinding(f)
			}
			if noSNI != nil && r.Leaf != nil && noSNI.SHA256 != "" {
				noSNI.SameAsSNI = noSNI.SHA256 == r.Leaf.SHA256
			}
			r.NoSNI = noSNI
		}
		if p.opts.ClientCert != nil {
			info, fs := ClientCertExpiry(p.opts.ClientCert, p.opts.Now, p.opts.Thresholds)
			r.ClientCert = info
			for _, f := range fs {
				p.addFinding(f)
			}
		}
		// no_sct is reported for every certificate without SCTs (the
		// contract's literal rule; it is info and never moves the status);
		// the message says whether CT-enforcing clients care.
		if r.SCTCount != nil {
			for _, f := range sctFindings(r.SCTs, publiclyTrusted(r.TrustStores)) {
				p.addFinding(f)
			}
		}
		p.addStartTLSHint()
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
	hint := StartTLSHint(p.target.Host, p.target.Port)
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
	return StartTLS(ctx, conn, p.target.Scheme, name)
}

// classifyStartTLS turns a failed STARTTLS dialogue into a finding.
// Timeouts are left to the generic classification.
func classifyStartTLS(err error) (Finding, bool) {
	var se *StartTLSError
	if !errors.As(err, &se) || isTimeout(err) {
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
