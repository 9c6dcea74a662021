package probe

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// unanchored must only ever answer where crypto/x509 itself answers
// UnknownAuthorityError, and must not answer where a root could anchor the
// chain or where Verify fails with another error type.
func TestUnanchoredAgreesWithVerify(t *testing.T) {
	p := testlab.NewPKI(t)
	const day = 24 * time.Hour
	expired := p.NewIntermediate(p.Root, testlab.CAOpts{CommonName: "expired inter",
		NotBefore: p.Now.Add(-400 * day), NotAfter: p.Now.Add(-day)})
	other := p.NewRoot("tlswatch Other Root")
	chains := map[string][]*x509.Certificate{}
	add := func(name string, o testlab.LeafOpts) {
		c := p.Leaf(o)
		var certs []*x509.Certificate
		for _, der := range c.Certificate {
			x, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, x)
		}
		chains[name] = certs
	}
	add("valid", testlab.LeafOpts{})
	add("missing_intermediate", testlab.LeafOpts{Chain: []*x509.Certificate{}})
	add("expired_intermediate", testlab.LeafOpts{Issuer: expired, Chain: []*x509.Certificate{expired.Cert}})
	add("untrusted", testlab.LeafOpts{Issuer: p.UntrustedIntermediate})
	add("self_signed", testlab.LeafOpts{SelfSigned: true})
	add("root_served", testlab.LeafOpts{Chain: []*x509.Certificate{p.Intermediate.Cert, p.Root.Cert}})
	add("expired_leaf", testlab.LeafOpts{NotBefore: p.Now.Add(-100 * day), NotAfter: p.Now.Add(-day)})
	add("other_root", testlab.LeafOpts{Issuer: other})

	pools := map[string]*x509.CertPool{
		"lab":     p.Roots(),
		"empty":   x509.NewCertPool(),
		"mozilla": mozillaBundle(),
		"other":   poolOf(other.Cert),
		"self":    poolOf(chains["self_signed"][0]),
	}
	for cn, certs := range chains {
		for pn, pool := range pools {
			leaf, inter := certs[0], certs[1:]
			short := unanchored(leaf, inter, pool, p.Now)
			ip := x509.NewCertPool()
			for _, c := range inter {
				ip.AddCert(c)
			}
			_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: ip, CurrentTime: p.Now})
			var ua x509.UnknownAuthorityError
			isUA := errors.As(err, &ua)
			if short && !isUA {
				t.Errorf("%s against %s: unanchored, but Verify says %v", cn, pn, err)
			}
			if short {
				_, got := NewCache().verify.verifyChains(leaf, inter, pool, p.Now, false)
				if !errors.As(got, &ua) {
					t.Errorf("%s against %s: verifyChains = %v, want UnknownAuthorityError", cn, pn, got)
				}
			}
			// The cases the shortcut is for must take it.
			if (pn == "empty" || pn == "mozilla") && (cn == "valid" || cn == "untrusted") && !short {
				t.Errorf("%s against %s: not recognised as unanchored", cn, pn)
			}
		}
	}
}

func poolOf(cs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}
