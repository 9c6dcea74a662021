package foreignlab_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/foreignlab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// legacyOnly is the verdict of a server that speaks only an old version:
// its TLS works (reachable) but no agent runtime accepts it (TLS 1.2 is
// their minimum), so it is down. Its suites are ECDHE with AES-CBC, which
// Mozilla's "old" profile allows: a weak_cipher info about them is
// tolerated, nothing stronger (the protocol is the problem, and
// deprecated_protocol and handshake_failed say so).
func legacyOnly(version, other string) verdict {
	return verdict{Status: probe.StatusDown, Reachable: true, Trusted: false,
		Findings: F{probe.CodeHandshakeFailed: crit, probe.CodeDeprecatedProtocol: warn},
		Facts: []fact{has(probe.CodeHandshakeFailed, version), has(probe.CodeDeprecatedProtocol, version),
			lacks(probe.CodeDeprecatedProtocol, other)},
		Checks: []check{tlsVersion(version)}}
}

// stock is the verdict of a stack's shipped cipher configuration with an
// ECDSA certificate, scanned in depth: ECDHE everywhere, AEAD first, CBC
// suites still accepted. That meets Mozilla's "old" profile and misses
// "intermediate": worth an info, not a warning. (The CAMELLIA, ARIA and
// CCM suites some stacks add are forward-secret and rated strong by SSL
// Labs and testssl.sh; they are not weak for missing from Mozilla's list.)
func stock(extra F, checks ...check) verdict {
	fs := F{probe.CodeWeakCipher: info}
	status := probe.StatusOK
	for code, sev := range extra {
		fs[code] = sev
		if sev == warn {
			status = probe.StatusWarning
		}
	}
	return verdict{Status: status, Reachable: true, Trusted: true, Findings: fs,
		Absent: []string{probe.CodeChainOrder, probe.CodeWeakDH},
		Facts:  []fact{has(probe.CodeWeakCipher, "(?i)intermediate")}, Checks: checks}
}

// protocolCases: versions, suites and DH groups.
func protocolCases() []labCase {
	ecdsa := func(p *testlab.PKI) tls.Certificate { return p.Leaf(testlab.LeafOpts{}) }
	rsa := func(p *testlab.PKI) tls.Certificate { return p.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048}) }
	cbcOnly := func(t *testing.T, p *testlab.PKI) endpoint {
		return on(foreignlab.StartOpenSSL(t, foreignlab.TLS{Cert: ecdsa(p), Versions: []uint16{tls.VersionTLS12},
			Ciphers: "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"}))
	}
	return []labCase{
		// The two legacy-only servers are scanned in depth (SSLv3 too);
		// TLS 1.0 + 1.2 below takes the default path agents get.
		// OpenSSL 3.0 needs security level 0 for anything below TLS 1.2.
		{Name: "openssl/tls10-only", Deep: true, Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, foreignlab.TLS{Cert: ecdsa(p), Versions: []uint16{tls.VersionTLS10},
				Ciphers: "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0"}))
		}, Want: legacyOnly("TLS 1.0", "TLS 1.1")},
		{Name: "gnutls/tls11-only", Deep: true, Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, foreignlab.TLS{Cert: ecdsa(p), Versions: []uint16{tls.VersionTLS11}}))
		}, Want: legacyOnly("TLS 1.1", "TLS 1.0")},
		{Name: "nginx/tls10-and-tls12", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: ecdsa(p),
				Versions: []uint16{tls.VersionTLS10, tls.VersionTLS12}, Ciphers: "DEFAULT:@SECLEVEL=0"}}))
		}, Want: verdict{Status: probe.StatusWarning, Reachable: true, Trusted: true, Findings: F{probe.CodeDeprecatedProtocol: warn},
			Facts:  []fact{has(probe.CodeDeprecatedProtocol, "TLS 1.0"), lacks(probe.CodeDeprecatedProtocol, "TLS 1.1")},
			Checks: []check{tlsVersion("TLS 1.2")}}},
		// Only ECDHE with AES-CBC, TLS 1.2 only: forward secret, in
		// Mozilla's "old" profile, outside "intermediate": info, with or
		// without the deep scan (the negotiated suite is CBC).
		{Name: "openssl/cbc-only", Serve: cbcOnly,
			Want: verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{probe.CodeWeakCipher: info},
				Facts: []fact{has(probe.CodeWeakCipher, "CBC")}, Checks: []check{tlsVersion("TLS 1.2")}}},
		{Name: "openssl/cbc-only-deep", Deep: true, Serve: cbcOnly,
			Want: verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{probe.CodeWeakCipher: info},
				Facts: []fact{has(probe.CodeWeakCipher, "CBC"), has(probe.CodeWeakCipher, "(?i)intermediate")}}},
		// ECDHE for those who can, DHE with the 1024-bit Oakley group 2
		// for the others (Logjam class): agents use ECDHE, the server is
		// still weak for every client that picks DHE. (Debian builds
		// OpenSSL with security level 2, which refuses a 1024-bit group;
		// level 1 is what such servers run with.)
		{Name: "openssl/dhe-1024", Deep: true, Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, foreignlab.TLS{Cert: rsa(p), Versions: modern, DHParams: foreignlab.DHGroup1024(),
				Ciphers: "ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=1"}))
		}, Want: verdict{Status: probe.StatusWarning, Reachable: true, Trusted: true, Findings: F{probe.CodeWeakDH: warn},
			Facts: []fact{has(probe.CodeWeakDH, "1024")}}},
		// Each stack as Debian 12 ships it (nginx 1.22: TLS 1.0-1.2
		// configured, 1.0 and 1.1 then refused by OpenSSL's security level
		// 2; s_server: TLS 1.2-1.3; GnuTLS NORMAL: TLS 1.0-1.3).
		{Name: "nginx/stock-deep", Deep: true, Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: ecdsa(p)}}))
		}, Want: stock(nil, tlsVersion("TLS 1.2"))},
		{Name: "openssl/stock-deep", Deep: true, Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, foreignlab.TLS{Cert: ecdsa(p)}))
		}, Want: stock(nil, tlsVersion("TLS 1.3"))},
		{Name: "gnutls/stock-deep", Deep: true, Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, foreignlab.TLS{Cert: ecdsa(p)}))
		}, Want: withFacts(stock(F{probe.CodeDeprecatedProtocol: warn}, tlsVersion("TLS 1.3")),
			has(probe.CodeDeprecatedProtocol, "TLS 1.0"), has(probe.CodeDeprecatedProtocol, "TLS 1.1"))},
		// GnuTLS's NORMAL plus RC4 and 3DES: RC4 is outside every Mozilla
		// profile (RFC 7465 forbids it). GnuTLS's own DHE group is 2048
		// bits: no weak_dh.
		{Name: "gnutls/rc4-3des", Deep: true, Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, foreignlab.TLS{Cert: rsa(p), Ciphers: "NORMAL:+ARCFOUR-128:+3DES-CBC"}))
		}, Want: verdict{Status: probe.StatusWarning, Reachable: true, Trusted: true,
			Findings: F{probe.CodeWeakCipher: warn, probe.CodeDeprecatedProtocol: warn}, Absent: []string{probe.CodeWeakDH},
			Facts:  []fact{has(probe.CodeWeakCipher, "RC4"), has(probe.CodeWeakCipher, "3DES")},
			Checks: []check{cipherAccepted("RC4"), cipherAccepted("3DES")}}},
	}
}

func withFacts(v verdict, fs ...fact) verdict {
	v.Facts = append(v.Facts, fs...)
	return v
}

// Verdicts of the client certificate cases.
var (
	// required: the server demands a certificate from the lab's root;
	// the probe has none. Its TLS works; agents need a certificate.
	required = verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{probe.CodeClientCertRequired: info},
		Absent: []string{probe.CodeClientCertRejected, probe.CodeHandshakeFailed}}
	// optional: the server asks, but serves a client without one.
	optional = verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{},
		Absent: []string{probe.CodeClientCertRequired, probe.CodeClientCertRejected, probe.CodeHandshakeFailed}}
	unknownCA = has(probe.CodeClientCertRejected, `(?i)unknown (ca|certificate authority)`)
)

// rejected: the certificate presented is refused: every agent configured
// with it fails, while the server itself is fine.
func rejected(facts ...fact) verdict {
	return verdict{Status: probe.StatusCritical, Reachable: true, Trusted: true, Findings: F{probe.CodeClientCertRejected: crit},
		Absent: []string{probe.CodeHandshakeFailed}, Facts: facts}
}

// mtls configures client certificates from the lab's root, at one
// version (0: TLS 1.2 and 1.3).
func mtls(p *testlab.PKI, v uint16, auth foreignlab.ClientAuth) foreignlab.TLS {
	cfg := foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{}), Versions: modern, ClientAuth: auth, ClientCAs: []*x509.Certificate{p.Root.Cert}}
	if v != 0 {
		cfg.Versions = []uint16{v}
	}
	return cfg
}

// clientCert is a client certificate from an issuing CA under the lab's
// root, presented with or without that CA.
func clientCert(p *testlab.PKI, withIssuer bool) *tls.Certificate {
	iss := p.NewIntermediate(p.Root, testlab.CAOpts{CommonName: "tlswatch Client Issuing CA"})
	chain := []*x509.Certificate{}
	if withIssuer {
		chain = append(chain, iss.Cert)
	}
	c := p.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent.tlswatch.test", Issuer: iss, Chain: chain})
	return &c
}

// foreignClientCert is a client certificate from a CA the servers do not
// accept.
func foreignClientCert(p *testlab.PKI) *tls.Certificate {
	c := p.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent.tlswatch.test", Issuer: p.UntrustedIntermediate})
	return &c
}

// clientCertCases: mTLS, where TLS 1.3 servers refuse a certificate only
// after the client's Finished.
func clientCertCases() []labCase {
	return []labCase{
		{Name: "openssl/client-cert-required-tls12", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, mtls(p, tls.VersionTLS12, foreignlab.RequireClientCert)))
		}, Want: required},
		{Name: "openssl/client-cert-required-tls13", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, mtls(p, tls.VersionTLS13, foreignlab.RequireClientCert)))
		}, Want: required},
		{Name: "gnutls/client-cert-required-tls13", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, mtls(p, tls.VersionTLS13, foreignlab.RequireClientCert)))
		}, Want: required},
		{Name: "openssl/client-cert-optional-tls13", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, mtls(p, tls.VersionTLS13, foreignlab.RequestClientCert)))
		}, Want: optional},
		{Name: "gnutls/client-cert-optional", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, mtls(p, 0, foreignlab.RequestClientCert)))
		}, Want: optional},
		// A certificate from a CA the server does not accept.
		{Name: "openssl/client-cert-rejected-tls12", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := on(foreignlab.StartOpenSSL(t, mtls(p, tls.VersionTLS12, foreignlab.RequireClientCert)))
			ep.ClientCert = foreignClientCert(p)
			return ep
		}, Want: rejected(unknownCA)},
		// The right CA, but sent without its intermediate: the server
		// cannot build the path and refuses it after our Finished.
		{Name: "openssl/client-cert-rejected-tls13", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := on(foreignlab.StartOpenSSL(t, mtls(p, tls.VersionTLS13, foreignlab.RequireClientCert)))
			ep.ClientCert = clientCert(p, false)
			return ep
		}, Want: rejected(unknownCA)},
		{Name: "gnutls/client-cert-rejected-tls13", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := on(foreignlab.StartGnuTLS(t, mtls(p, tls.VersionTLS13, foreignlab.RequireClientCert)))
			ep.ClientCert = foreignClientCert(p)
			return ep
		}, Want: rejected()},
		// The same certificate with its intermediate is accepted.
		{Name: "stunnel/client-cert-accepted", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := on(foreignlab.StartStunnel(t, mtls(p, 0, foreignlab.RequireClientCert)))
			ep.ClientCert = clientCert(p, true)
			return ep
		}, Want: verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{},
			Absent: []string{probe.CodeClientCertRejected, probe.CodeHandshakeFailed}}},
	}
}

// networkCases: what is on the port, if not a TLS server.
func networkCases() []labCase {
	notTLS := func(facts ...fact) verdict {
		return verdict{Status: probe.StatusDown, Reachable: false, Trusted: false, Findings: F{probe.CodeNotTLS: crit},
			Absent: []string{probe.CodeHandshakeFailed, probe.CodeTimeout}, Facts: facts}
	}
	silent := verdict{Status: probe.StatusDown, Reachable: false, Trusted: false, Findings: F{probe.CodeTimeout: crit},
		Absent: []string{probe.CodeConnectionRefused, probe.CodeConnectionReset}}
	raw := func(serve func(testing.TB) string, timeout time.Duration) func(t *testing.T, p *testlab.PKI) endpoint {
		return func(t *testing.T, p *testlab.PKI) endpoint { return endpoint{Addr: serve(t), Timeout: timeout} }
	}
	dovecot := func(t *testing.T, p *testlab.PKI) endpoint {
		return on(foreignlab.StartDovecot(t, foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{})}))
	}
	return []labCase{
		{Name: "dovecot/starttls", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := dovecot(t, p)
			ep.Scheme = "imap"
			return ep
		}, Want: healthy(tlsVersion("TLS 1.3"), targetScheme("imap"))},
		// Direct TLS on the STARTTLS port: the server greets in plain text.
		{Name: "dovecot/direct-tls-on-starttls-port", Serve: dovecot, Want: notTLS()},
		{Name: "nginx/plain-http", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{Plain: true}))
		}, Want: notTLS(has(probe.CodeNotTLS, "HTTP"))},
		// TCP accepted, then reset after the ClientHello: something
		// listens, so this is not "refused".
		{Name: "raw/reset", Serve: raw(testlab.ResetAfterHello, 0),
			Want: verdict{Status: probe.StatusDown, Reachable: true, Trusted: false, Findings: F{probe.CodeConnectionReset: crit},
				Absent: []string{probe.CodeConnectionRefused}, Facts: []fact{has(probe.CodeConnectionReset, "(?i)reset")}}},
		{Name: "raw/tarpit", Serve: raw(testlab.NeverAnswers, 3*time.Second), Want: silent},
		{Name: "raw/drip", Serve: raw(testlab.Dripper, 3*time.Second), Want: silent},
	}
}

// TestForeignStacks runs every case of the table against probe.Run.
func TestForeignStacks(t *testing.T) {
	for _, c := range cases() {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			p := testlab.NewPKI(t)
			ep := c.Serve(t, p)
			r := probeCase(t, p, ep, c.Deep)
			c.Want.verify(t, c.Name, r, ep)
		})
	}
}
