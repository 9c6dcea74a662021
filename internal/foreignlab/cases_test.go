package foreignlab_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tlswatch/tlswatch/internal/foreignlab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// The case table. Each verdict was written from the server's
// configuration alone, as SSL Labs or testssl.sh would judge it, in
// tlswatch's vocabulary (DESIGN.md codes, plus client_cert_rejected,
// connection_reset and weak_dh), before tlswatch was run against it. When
// tlswatch disagrees, the case fails: the engine is wrong, not the table.
//
// Conventions: the probed name is tlswatch.test, dialled at 127.0.0.1; the
// lab's root is the configured trust store (a private CA installed where
// agents look, so that no case is about the trust store unless it says
// so); Deep is set for the cases about suites, protocols and DH groups.

const day = 24 * time.Hour

// on is the endpoint of a started server.
func on(s *foreignlab.Server) endpoint { return endpoint{Addr: s.Addr, Server: s} }

var modern = []uint16{tls.VersionTLS12, tls.VersionTLS13}

// healthy is the verdict of a correct server: nothing beyond info.
func healthy(checks ...check) verdict {
	return verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{},
		Absent: []string{probe.CodeDeprecatedProtocol, probe.CodeWeakCipher, probe.CodeChainOrder, probe.CodeRootInChain,
			probe.CodeIncompleteChain, probe.CodeClientCertRequired, probe.CodeNoOCSPStaple, probe.CodeUntrustedElsewhere},
		Checks: append([]check{chainComplete(true)}, checks...)}
}

// down is the verdict of a server agents cannot use although its TLS
// works: one critical finding explains it.
func down(code string, absent []string, facts ...fact) verdict {
	return verdict{Status: probe.StatusDown, Reachable: true, Trusted: false, Findings: F{code: crit}, Absent: absent, Facts: facts}
}

func cases() []labCase {
	var all []labCase
	for _, group := range [][]labCase{chainCases(), trustCases(), validityCases(), protocolCases(), clientCertCases(), networkCases()} {
		all = append(all, group...)
	}
	return all
}

// chainCases: what the server sends and who signed it.
func chainCases() []labCase {
	return []labCase{
		{Name: "nginx/healthy", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{}), Versions: modern}, HTTP2: true}))
		}, Want: healthy(tlsVersion("TLS 1.3"), alpn("h2"))},
		{Name: "openssl/healthy", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{}), Versions: modern, ALPN: []string{"h2", "http/1.1"}}))
		}, Want: healthy(tlsVersion("TLS 1.3"), alpn("h2"))},
		{Name: "gnutls/healthy", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048}), Versions: modern, ALPN: []string{"h2"}}))
		}, Want: healthy(tlsVersion("TLS 1.3"), alpn("h2"))},
		{Name: "stunnel/healthy", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartStunnel(t, foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{})}))
		}, Want: healthy(tlsVersion("TLS 1.3"))},

		// The leaf alone, its issuer fetchable from the leaf's AIA URL:
		// browsers repair it, agents do not.
		{Name: "nginx/missing-intermediate-aia", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			aia := testlab.ServeAIA(t, p.Intermediate.Cert, nil)
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{AIAURL: aia, Chain: []*x509.Certificate{}})}}))
		}, Want: withChecks(down(probe.CodeIncompleteChain, []string{probe.CodeUntrustedRoot, probe.CodeSelfSigned},
			has(probe.CodeIncompleteChain, "tlswatch Test Intermediate CA"), has(probe.CodeIncompleteChain, "AIA")), chainComplete(false))},
		// A private CA's leaf alone, no AIA, and the private root given
		// with --ca-file: the root is known, so the intermediate is what
		// is missing, and the advice must not be to add the root again.
		{Name: "nginx/missing-intermediate-no-aia", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{Chain: []*x509.Certificate{}})}}))
			ep.CustomRoots = true
			return ep
		}, Want: withChecks(down(probe.CodeIncompleteChain, []string{probe.CodeUntrustedRoot, probe.CodeSelfSigned, probe.CodeUntrustedElsewhere},
			has(probe.CodeIncompleteChain, "tlswatch Test Intermediate CA"), lacks(probe.CodeIncompleteChain, noRootAdvice)), chainComplete(false))},
		// leaf, Intermediate, Issuing CA 2: the Intermediate (#2) signed
		// Issuing CA 2 (#3) and comes before it instead of after it.
		{Name: "nginx/wrong-order", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			i2 := p.NewIntermediate(p.Intermediate, testlab.CAOpts{CommonName: "tlswatch Test Issuing CA 2"})
			cert := p.Leaf(testlab.LeafOpts{Issuer: i2, Chain: []*x509.Certificate{p.Intermediate.Cert, i2.Cert}})
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: cert}}))
		}, Want: verdict{Status: probe.StatusWarning, Reachable: true, Trusted: true, Findings: F{probe.CodeChainOrder: warn},
			Absent: []string{probe.CodeIncompleteChain, probe.CodeUntrustedRoot},
			Facts: []fact{has(probe.CodeChainOrder, "tlswatch Test Intermediate CA"), has(probe.CodeChainOrder, "before"),
				lacks(probe.CodeChainOrder, "comes after the certificate it signed")}}},
		{Name: "nginx/served-root", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			cert := p.Leaf(testlab.LeafOpts{Chain: []*x509.Certificate{p.Intermediate.Cert, p.Root.Cert}})
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: cert, Versions: modern}}))
		}, Want: verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{probe.CodeRootInChain: info},
			Absent: []string{probe.CodeChainOrder}, Facts: []fact{has(probe.CodeRootInChain, "tlswatch Test Root CA")}}},
		// An unrelated CA certificate served after the right chain.
		{Name: "stunnel/extra-certificate", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			cert := p.Leaf(testlab.LeafOpts{Chain: []*x509.Certificate{p.Intermediate.Cert, p.UntrustedIntermediate.Cert}})
			return on(foreignlab.StartStunnel(t, foreignlab.TLS{Cert: cert}))
		}, Want: verdict{Status: probe.StatusWarning, Reachable: true, Trusted: true, Findings: F{probe.CodeChainOrder: warn},
			Absent: []string{probe.CodeRootInChain, probe.CodeUntrustedRoot},
			Facts:  []fact{has(probe.CodeChainOrder, "tlswatch Untrusted Intermediate CA"), has(probe.CodeChainOrder, "unrelated")}}},
	}
}

// trustCases: who signed the chain, with what, and for which names.
func trustCases() []labCase {
	return []labCase{
		{Name: "gnutls/self-signed", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{SelfSigned: true}), Versions: modern}))
		}, Want: down(probe.CodeSelfSigned, []string{probe.CodeUntrustedRoot, probe.CodeIncompleteChain})},
		// A private CA's leaf and intermediate; the root is neither served
		// nor trusted, and nothing links it to the configured root.
		{Name: "gnutls/untrusted-private-root", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartGnuTLS(t, foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{Issuer: p.UntrustedIntermediate}), Versions: modern}))
		}, Want: down(probe.CodeUntrustedRoot, []string{probe.CodeIncompleteChain, probe.CodeSelfSigned},
			has(probe.CodeUntrustedRoot, "tlswatch Untrusted Root CA"))},
		{Name: "stunnel/untrusted-root-served", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			cert := p.Leaf(testlab.LeafOpts{Issuer: p.UntrustedIntermediate,
				Chain: []*x509.Certificate{p.UntrustedIntermediate.Cert, p.UntrustedRoot.Cert}})
			return on(foreignlab.StartStunnel(t, foreignlab.TLS{Cert: cert}))
		}, Want: down(probe.CodeUntrustedRoot, []string{probe.CodeIncompleteChain, probe.CodeSelfSigned},
			has(probe.CodeUntrustedRoot, "tlswatch Untrusted Root CA"))},
		// Debian's OpenSSL (security level 2) refuses to load a 1024-bit
		// key; level 1 is what a server still serving one runs with.
		{Name: "nginx/rsa1024", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA1024}),
				Versions: modern, Ciphers: "DEFAULT:@SECLEVEL=1"}}))
		}, Want: verdict{Status: probe.StatusWarning, Reachable: true, Trusted: true, Findings: F{probe.CodeWeakKey: warn},
			Facts: []fact{has(probe.CodeWeakKey, "1024")}}},
		// A complete chain whose leaf is signed with SHA-1: agents refuse
		// the signature, and nothing is missing from the chain. (OpenSSL
		// 3.0 loads a SHA-1 certificate only at security level 0.)
		{Name: "openssl/sha1", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartOpenSSL(t, foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{SignatureAlgorithm: x509.ECDSAWithSHA1}),
				Versions: modern, Ciphers: "DEFAULT:@SECLEVEL=0"}))
		}, Want: withChecks(down(probe.CodeWeakSignature, []string{probe.CodeUntrustedRoot, probe.CodeIncompleteChain, probe.CodeInvalidChain},
			has(probe.CodeWeakSignature, "SHA1|SHA-1")), chainComplete(true))},
		// SNI: the vhost's certificate for its name, the default server's
		// for any other name.
		{Name: "nginx/sni-vhost", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			return on(foreignlab.StartNginx(t, sniConfig(p)))
		}, Want: healthy(leafFor(testlab.DefaultHost))},
		{Name: "nginx/sni-unknown-name", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := on(foreignlab.StartNginx(t, sniConfig(p)))
			ep.Host = "unknown.test"
			return ep
		}, Want: down(probe.CodeHostnameMismatch, nil, has(probe.CodeHostnameMismatch, `default\.test`), has(probe.CodeHostnameMismatch, `unknown\.test`))},
	}
}

func sniConfig(p *testlab.PKI) foreignlab.Nginx {
	return foreignlab.Nginx{
		TLS:    foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{DNSNames: []string{"default.test"}}), Versions: modern},
		VHosts: []foreignlab.VHost{{Name: testlab.DefaultHost, Cert: foreignlab.TLS{Cert: p.Leaf(testlab.LeafOpts{}), Versions: modern}}},
	}
}

func withChecks(v verdict, cs ...check) verdict {
	v.Checks = append(v.Checks, cs...)
	return v
}

// nginxLeaf serves, on nginx with TLS 1.2 and 1.3, a leaf shaped by opts.
func nginxLeaf(opts func(p *testlab.PKI) testlab.LeafOpts) func(t *testing.T, p *testlab.PKI) endpoint {
	return func(t *testing.T, p *testlab.PKI) endpoint {
		return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: p.Leaf(opts(p)), Versions: modern}}))
	}
}

// valid shapes a leaf valid from Now+from to Now+to.
func valid(from, to time.Duration) func(p *testlab.PKI) testlab.LeafOpts {
	return func(p *testlab.PKI) testlab.LeafOpts {
		return testlab.LeafOpts{NotBefore: p.Now.Add(from), NotAfter: p.Now.Add(to)}
	}
}

// named shapes a leaf for these DNS names.
func named(names ...string) func(p *testlab.PKI) testlab.LeafOpts {
	return func(*testlab.PKI) testlab.LeafOpts { return testlab.LeafOpts{DNSNames: names} }
}

// validityCases: dates, names and revocation of the leaf and its issuer.
func validityCases() []labCase {
	return []labCase{
		{Name: "nginx/expired", Serve: nginxLeaf(valid(-93*day, -3*day)),
			Want: withChecks(down(probe.CodeExpired, []string{probe.CodeExpiringSoon, probe.CodeUntrustedRoot, probe.CodeExpiredIntermediate},
				has(probe.CodeExpired, "3 days ago")), stage("expired"))},
		// Valid in 9 days 23 hours 57 minutes: said in days.
		{Name: "nginx/not-yet-valid", Serve: nginxLeaf(valid(10*day-3*time.Minute, 100*day)),
			Want: down(probe.CodeNotYetValid, []string{probe.CodeExpired},
				has(probe.CodeNotYetValid, `\bdays?\b`), lacks(probe.CodeNotYetValid, `\d+h\d+m`))},
		// A 90-day certificate with 5 days left: renewal failed.
		{Name: "nginx/five-days-left", Serve: nginxLeaf(valid(-85*day, 5*day+12*time.Hour)),
			Want: verdict{Status: probe.StatusCritical, Reachable: true, Trusted: true, Findings: F{probe.CodeExpiringSoon: crit, probe.CodeRenewalOverdue: crit},
				Facts: []fact{has(probe.CodeExpiringSoon, `\b5 days\b`), has(probe.CodeRenewalOverdue, `day 85 of 91`)}, Checks: []check{stage("7d")}}},
		// A short-lived certificate (5 days, issued 12 hours ago, like
		// Let's Encrypt's six-day ones): 4.5 days left is most of its
		// life; by the turn-2 expiry rule (under the threshold AND under
		// a third of the lifetime) nothing is due.
		{Name: "nginx/five-day-lifetime", Serve: nginxLeaf(valid(-12*time.Hour, 4*day+12*time.Hour)),
			Want: withChecks(healthy(), stage("none"))},
		{Name: "nginx/expired-intermediate", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			old := p.NewIntermediate(p.Root, testlab.CAOpts{CommonName: "tlswatch Expired Intermediate CA",
				NotBefore: p.Now.Add(-400 * day), NotAfter: p.Now.Add(-day)})
			cert := p.Leaf(testlab.LeafOpts{Issuer: old, Chain: []*x509.Certificate{old.Cert},
				NotBefore: p.Now.Add(-30 * day), NotAfter: p.Now.Add(60 * day)})
			return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: foreignlab.TLS{Cert: cert, Versions: modern}}))
		}, Want: down(probe.CodeExpiredIntermediate, []string{probe.CodeExpired, probe.CodeUntrustedRoot, probe.CodeIncompleteChain, probe.CodeInvalidChain},
			has(probe.CodeExpiredIntermediate, "tlswatch Expired Intermediate CA"))},
		{Name: "nginx/name-mismatch", Serve: nginxLeaf(named("other.test")),
			Want: down(probe.CodeHostnameMismatch, []string{probe.CodeCNOnly},
				has(probe.CodeHostnameMismatch, `other\.test`), has(probe.CodeHostnameMismatch, `tlswatch\.test`))},
		{Name: "nginx/wildcard-one-label", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := nginxLeaf(named("*."+testlab.DefaultHost))(t, p)
			ep.Host = "api." + testlab.DefaultHost
			return ep
		}, Want: healthy()},
		{Name: "nginx/wildcard-depth", Serve: func(t *testing.T, p *testlab.PKI) endpoint {
			ep := nginxLeaf(named("*."+testlab.DefaultHost))(t, p)
			ep.Host = "a.b." + testlab.DefaultHost
			return ep
		}, Want: down(probe.CodeHostnameMismatch, nil, has(probe.CodeHostnameMismatch, "one label"))},
		// No SAN at all, the name only in the CN: one cause, one finding.
		{Name: "nginx/cn-only", Serve: nginxLeaf(func(*testlab.PKI) testlab.LeafOpts {
			return testlab.LeafOpts{NoSAN: true, CommonName: testlab.DefaultHost}
		}),
			Want: down(probe.CodeCNOnly, []string{probe.CodeHostnameMismatch})},
		{Name: "nginx/ocsp-stapled-good", Serve: stapledLeaf(testlab.OCSPGood, true, false),
			Want: withChecks(healthy(), stapled(true))},
		// Go and the agent runtimes ignore revocation, so agents still
		// connect (trusted), but the certificate must be replaced now.
		{Name: "nginx/ocsp-revoked-staple", Serve: stapledLeaf(testlab.OCSPRevoked, true, false),
			Want: verdict{Status: probe.StatusCritical, Reachable: true, Trusted: true, Findings: F{probe.CodeRevoked: crit},
				Absent: []string{probe.CodeNoOCSPStaple, probe.CodeOCSPUnavailable}, Checks: []check{stapled(true)}}},
		// must_staple_missing replaces no_ocsp_staple when the
		// certificate demands a staple (DESIGN.md).
		{Name: "nginx/must-staple-without-staple", Serve: stapledLeaf(testlab.OCSPGood, false, true),
			Want: verdict{Status: probe.StatusCritical, Reachable: true, Trusted: true, Findings: F{probe.CodeMustStapleMissing: crit},
				Absent: []string{probe.CodeNoOCSPStaple, probe.CodeRevoked}, Checks: []check{stapled(false)}}},
		{Name: "nginx/ocsp-url-without-stapling", Serve: stapledLeaf(testlab.OCSPGood, false, false),
			Want: verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: F{probe.CodeNoOCSPStaple: info},
				Absent: []string{probe.CodeMustStapleMissing, probe.CodeOCSPUnavailable, probe.CodeRevoked}, Checks: []check{stapled(false)}}},
	}
}

// stapledLeaf serves a leaf naming an OCSP responder in mode, with a
// stapled response of the same status when staple is set.
func stapledLeaf(mode testlab.OCSPMode, staple, mustStaple bool) func(t *testing.T, p *testlab.PKI) endpoint {
	return func(t *testing.T, p *testlab.PKI) endpoint {
		url := p.ServeOCSP(p.Intermediate, mode, nil)
		cert := p.Leaf(testlab.LeafOpts{OCSPURL: url, MustStaple: mustStaple})
		cfg := foreignlab.TLS{Cert: cert, Versions: modern}
		if staple {
			status := ocsp.Good
			if mode == testlab.OCSPRevoked {
				status = ocsp.Revoked
			}
			cfg.OCSPStaple = p.OCSPResponse(cert.Leaf, p.Intermediate, status)
		}
		return on(foreignlab.StartNginx(t, foreignlab.Nginx{TLS: cfg}))
	}
}
