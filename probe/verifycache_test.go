package probe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
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
	// Intermediates with a path length constraint, as public CAs issue them
	// (pathlen 0 under the root; 1 above another).
	zero := pathLenCA(t, p, p.Root, "pathlen0 inter", 0)
	add("pathlen0", testlab.LeafOpts{Issuer: zero, Chain: []*x509.Certificate{zero.Cert}})
	one := pathLenCA(t, p, p.Root, "pathlen1 inter", 1)
	below := pathLenCA(t, p, one, "pathlen0 below 1", 0)
	add("pathlen1_0", testlab.LeafOpts{Issuer: below, Chain: []*x509.Certificate{below.Cert, one.Cert}})
	tooDeep := pathLenCA(t, p, zero, "below pathlen0", -1)
	add("pathlen_violated", testlab.LeafOpts{Issuer: tooDeep, Chain: []*x509.Certificate{tooDeep.Cert, zero.Cert}})

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
			common := cn == "valid" || cn == "untrusted" || cn == "pathlen0"
			if (pn == "empty" || pn == "mozilla") && common && !short {
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

// pathLenCA issues an intermediate CA under parent whose path length
// constraint is maxPathLen (-1: none).
func pathLenCA(t *testing.T, p *testlab.PKI, parent *testlab.Authority, cn string, maxPathLen int) *testlab.Authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             p.Now.AddDate(-1, 0, 0),
		NotAfter:              p.Now.AddDate(3, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testlab.Authority{Cert: c, Key: key}
}
