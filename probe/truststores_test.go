package probe

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

func verdictOf(vs []TrustVerdict, store string) *TrustVerdict {
	for i := range vs {
		if vs[i].Store == store {
			return &vs[i]
		}
	}
	return nil
}

// A chain trusted only because of the operator's --ca-file root: agents
// without that CA fail, so untrusted_elsewhere.
func TestTrustStoresCustomOnly(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	cs := handshakeState(t, addr, testlab.DefaultHost)

	vs, fs := checkTrustStores(trustStoreInput{
		Leaf: cs.PeerCertificates[0], Intermediates: cs.PeerCertificates[1:], Now: pki.Now,
		Configured: pki.Roots(), Custom: pki.Roots(),
		System: x509.NewCertPool(), // a machine without the lab root
	})
	if v := verdictOf(vs, StoreConfigured); v == nil || !v.Trusted {
		t.Errorf("configured: %+v", v)
	}
	if v := verdictOf(vs, StoreMozilla); v == nil || v.Trusted || v.Error == "" {
		t.Errorf("mozilla trusts a lab root: %+v", v)
	}
	if v := verdictOf(vs, StoreCustom); v == nil || !v.Trusted {
		t.Errorf("custom: %+v", v)
	}
	if len(fs) != 1 || fs[0].Code != CodeUntrustedElsewhere || fs[0].Severity != SeverityInfo {
		t.Fatalf("findings %v, want untrusted_elsewhere info", findingCodes(fs))
	}
}

// The reverse: the configured store lacks a root that Mozilla's bundle has.
func TestTrustStoresReverse(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	_, fs := checkTrustStores(trustStoreInput{
		Leaf: cert.Leaf, Intermediates: []*x509.Certificate{pki.Intermediate.Cert}, Now: pki.Now,
		Configured: x509.NewCertPool(), System: x509.NewCertPool(), Mozilla: pki.Roots(),
	})
	if !hasCode(fs, CodeUntrustedElsewhere) {
		t.Fatalf("findings %v", findingCodes(fs))
	}
}

// Same verdict everywhere (here: the lab root everywhere, no custom roots
// given separately): no finding.
func TestTrustStoresAgree(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	vs, fs := checkTrustStores(trustStoreInput{
		Leaf: cert.Leaf, Intermediates: []*x509.Certificate{pki.Intermediate.Cert}, Now: pki.Now,
		Configured: pki.Roots(), System: pki.Roots(), Mozilla: pki.Roots(),
	})
	if len(fs) != 0 || len(vs) != 3 {
		t.Fatalf("verdicts %+v findings %v", vs, findingCodes(fs))
	}
	// Untrusted by all: untrusted_root is the core's finding, not ours.
	_, fs = checkTrustStores(trustStoreInput{
		Leaf: cert.Leaf, Now: pki.Now, Configured: x509.NewCertPool(), System: x509.NewCertPool(),
	})
	if len(fs) != 0 {
		t.Fatalf("findings %v", findingCodes(fs))
	}
}

func TestMozillaRootsSeparate(t *testing.T) {
	if mozillaBundle() == nil || len(mozillaRoots) < 50 {
		t.Fatalf("bundle has %d roots", len(mozillaRoots))
	}
}
