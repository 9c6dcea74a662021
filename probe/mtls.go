package probe

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// clientCertVerdict says what the server makes of client certificates,
// from the attempt that carried its CertificateRequest:
//
//   - no certificate presented, refused: client_cert_required (info: TLS
//     works, agents need a certificate);
//   - no certificate presented, accepted: optional mTLS, no finding;
//   - certificate presented, refused (a TLS 1.2 abort, or the TLS 1.3 alert
//     after the handshake): client_cert_rejected (critical);
//   - certificate presented, accepted: client_cert_required when the
//     handshake without one is refused, nothing when it is accepted.
func (p *probeRun) clientCertVerdict() {
	if p.certRequest == nil {
		return
	}
	cas := acceptableCAs(p.certRequest)
	refused := p.certAttempt.refusal()
	cc := p.opts.ClientCert
	switch {
	case cc == nil && refused != nil:
		p.add(CodeClientCertRequired, "the server requires a client certificate (mTLS): without one it refused the connection (%s); %s",
			refusalText(refused), cas)
	case cc == nil:
		// It asks, but lets clients without a certificate in.
	case refused != nil:
		p.add(CodeClientCertRejected, "the server refused the client certificate presented (%s) with %s%s; %s: every connection with this certificate fails",
			clientCertName(cc), refusalText(refused), afterHandshake(p.certAttempt), cas)
	case p.withoutCert.refusal() != nil:
		p.add(CodeClientCertRequired, "the server requires a client certificate (mTLS): it accepted the one presented (%s) and refuses clients without one (%s); %s",
			clientCertName(cc), refusalText(p.withoutCert.refusal()), cas)
	}
}

// acceptableCAs names the CAs the server accepts client certificates from.
func acceptableCAs(cri *tls.CertificateRequestInfo) string {
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
	if len(names) == 0 {
		return "it names no acceptable CAs"
	}
	return "acceptable CAs: " + strings.Join(names, "; ")
}

// refusalText names how the server refused: its alert, or how it closed.
func refusalText(err error) string {
	var opErr *net.OpError
	var he *httpRefusalError
	switch {
	case errors.As(err, &he):
		return fmt.Sprintf("the HTTP answer %d %q", he.status, he.title)
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		return fmt.Sprintf("the alert %q", strings.TrimPrefix(opErr.Err.Error(), "tls: "))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "closing the connection without an alert"
	case isReset(err):
		return "resetting the connection"
	}
	return err.Error()
}

// afterHandshake notes a refusal that agents see only once the handshake
// looked complete: on their first read (TLS 1.3), or as an HTTP error.
func afterHandshake(a *attempt) string {
	var he *httpRefusalError
	switch {
	case a.err != nil || a.postErr == nil:
		return ""
	case errors.As(a.postErr, &he):
		return " at the HTTP layer (the TLS handshake completes; every request fails)"
	}
	return " after the TLS 1.3 handshake (clients see it on their first read)"
}

// clientCertName names the certificate we present by its subject and issuer.
func clientCertName(c *tls.Certificate) string {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return "an unparsable certificate"
	}
	return fmt.Sprintf("%s, issued by %s", leaf.Subject.String(), leaf.Issuer.String())
}
