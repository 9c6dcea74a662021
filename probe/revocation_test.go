package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"golang.org/x/crypto/ocsp"
)

// handshakeState dials addr with verification off (as the probe does) and
// returns the connection state, so tests see exactly what the server sent.
func handshakeState(t *testing.T, addr, sni string) tls.ConnectionState {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState()
}

func hasCode(fs []Finding, code string) bool {
	for _, f := range fs {
		if f.Code == code {
			return true
		}
	}
	return false
}

func findingCodes(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code+"("+string(f.Severity)+")")
	}
	return out
}

func TestRevocationOCSPModes(t *testing.T) {
	pki := testlab.NewPKI(t)
	cases := []struct {
		name       string
		mode       testlab.OCSPMode
		wantStatus string
		wantCodes  []string
		notCodes   []string
	}{
		{"good", testlab.OCSPGood, RevStatusGood, []string{CodeNoOCSPStaple}, []string{CodeRevoked, CodeOCSPUnavailable}},
		{"revoked", testlab.OCSPRevoked, RevStatusRevoked, []string{CodeRevoked}, []string{CodeOCSPUnavailable}},
		{"hang", testlab.OCSPHang, RevStatusUnavailable, []string{CodeOCSPUnavailable}, []string{CodeRevoked}},
		{"garbage", testlab.OCSPGarbage, RevStatusUnavailable, []string{CodeOCSPUnavailable}, []string{CodeRevoked}},
		{"bad signature", testlab.OCSPBadSignature, RevStatusUnavailable, []string{CodeOCSPUnavailable}, []string{CodeRevoked}},
		{"try later", testlab.OCSPTryLater, RevStatusUnavailable, []string{CodeOCSPUnavailable}, nil},
		{"unknown", testlab.OCSPUnknown, RevStatusUnavailable, []string{CodeOCSPUnavailable}, []string{CodeRevoked}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int64
			url := pki.ServeOCSP(pki.Intermediate, tc.mode, &hits)
			leaf := pki.Leaf(testlab.LeafOpts{OCSPURL: url})
			start := time.Now()
			res := checkRevocation(context.Background(), revocationInput{Leaf: leaf.Leaf, Issuer: pki.Intermediate.Cert},
				revocationOptions{Now: pki.Now, Timeout: 300 * time.Millisecond})
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("took %v: the timeout did not bound it", el)
			}
			if res.Revocation.Status != tc.wantStatus {
				t.Errorf("status = %q (%+v), want %q", res.Revocation.Status, res.Revocation, tc.wantStatus)
			}
			for _, c := range tc.wantCodes {
				if !hasCode(res.Findings, c) {
					t.Errorf("missing %s in %v", c, findingCodes(res.Findings))
				}
			}
			for _, c := range tc.notCodes {
				if hasCode(res.Findings, c) {
					t.Errorf("unexpected %s in %v", c, findingCodes(res.Findings))
				}
			}
			if hits.Load() == 0 {
				t.Error("the responder was never asked")
			}
			if tc.mode == testlab.OCSPRevoked && Codes[CodeRevoked].Severity != SeverityCritical {
				t.Error("revoked must be critical")
			}
		})
	}
}

func TestRevocationOCSPCached(t *testing.T) {
	pki := testlab.NewPKI(t)
	var hits atomic.Int64
	url := pki.ServeOCSP(pki.Intermediate, testlab.OCSPGood, &hits)
	leaf := pki.Leaf(testlab.LeafOpts{OCSPURL: url})
	in := revocationInput{Leaf: leaf.Leaf, Issuer: pki.Intermediate.Cert}
	cache := NewCache()
	for i := 0; i < 3; i++ {
		res := checkRevocation(context.Background(), in, revocationOptions{Now: pki.Now, cache: cache.rev})
		if res.Revocation.Status != RevStatusGood {
			t.Fatalf("status %q", res.Revocation.Status)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("responder asked %d times, want 1 (cached until nextUpdate)", hits.Load())
	}
}

func TestRevocationCRLFallback(t *testing.T) {
	pki := testlab.NewPKI(t)
	var hits atomic.Int64
	// OCSP hangs, so the CRL must answer.
	ocspURL := pki.ServeOCSP(pki.Intermediate, testlab.OCSPHang, nil)
	crlURL := pki.ServeCRL(pki.Intermediate, nil, &hits)
	leaf2 := pki.Leaf(testlab.LeafOpts{CRLURL: crlURL, OCSPURL: ocspURL})
	// leaf2 is not listed: good by CRL, with ocsp_unavailable for the hang.
	res := checkRevocation(context.Background(), revocationInput{Leaf: leaf2.Leaf, Issuer: pki.Intermediate.Cert},
		revocationOptions{Now: pki.Now, Timeout: 300 * time.Millisecond})
	if res.Revocation.Method != RevMethodCRL || res.Revocation.Status != RevStatusGood {
		t.Errorf("got %+v, want good by crl", res.Revocation)
	}
	if !hasCode(res.Findings, CodeOCSPUnavailable) {
		t.Errorf("hanging OCSP not reported: %v", findingCodes(res.Findings))
	}

	// A certificate listed on its CRL.
	listed := pki.Leaf(testlab.LeafOpts{})
	crlURL3 := pki.ServeCRL(pki.Intermediate, []*big.Int{listed.Leaf.SerialNumber}, &hits)
	listed.Leaf.CRLDistributionPoints = []string{crlURL3} // what the CA would have written
	before := hits.Load()
	cache := NewCache()
	for i := 0; i < 2; i++ {
		res = checkRevocation(context.Background(), revocationInput{Leaf: listed.Leaf, Issuer: pki.Intermediate.Cert},
			revocationOptions{Now: pki.Now, cache: cache.rev})
		if res.Revocation.Status != RevStatusRevoked || !hasCode(res.Findings, CodeRevoked) {
			t.Fatalf("got %+v %v, want revoked by CRL", res.Revocation, findingCodes(res.Findings))
		}
	}
	if n := hits.Load() - before; n != 1 {
		t.Errorf("CRL fetched %d times, want 1 (cached by nextUpdate)", n)
	}

	// A CRL signed by someone else is not believed.
	other := pki.Leaf(testlab.LeafOpts{})
	other.Leaf.CRLDistributionPoints = []string{pki.ServeCRL(pki.UntrustedIntermediate, nil, nil)}
	res = checkRevocation(context.Background(), revocationInput{Leaf: other.Leaf, Issuer: pki.Intermediate.Cert}, revocationOptions{Now: pki.Now})
	if res.Revocation.Status == RevStatusGood || !hasCode(res.Findings, CodeOCSPUnavailable) {
		t.Errorf("CRL from the wrong issuer taken: %+v %v", res.Revocation, findingCodes(res.Findings))
	}
}

func TestRevocationStapleGood(t *testing.T) {
	pki := testlab.NewPKI(t)
	var hits atomic.Int64
	url := pki.ServeOCSP(pki.Intermediate, testlab.OCSPRevoked, &hits) // must not be asked
	cert := pki.Leaf(testlab.LeafOpts{OCSPURL: url})
	cert.OCSPStaple = pki.OCSPResponse(cert.Leaf, pki.Intermediate, ocsp.Good,
		testlab.SCTListExtension(oidOCSPSCTList, 2))
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	cs := handshakeState(t, addr, testlab.DefaultHost)
	if len(cs.OCSPResponse) == 0 {
		t.Fatal("no staple received")
	}
	res := checkRevocation(context.Background(), revocationInput{Leaf: cs.PeerCertificates[0], Issuer: pki.Intermediate.Cert, Staple: cs.OCSPResponse},
		revocationOptions{Now: pki.Now})
	if !res.Stapled || !res.StapleVerified || res.Revocation.Method != RevMethodStaple || res.Revocation.Status != RevStatusGood {
		t.Errorf("got %+v", res)
	}
	if len(res.Findings) != 0 {
		t.Errorf("findings %v, want none", findingCodes(res.Findings))
	}
	if hits.Load() != 0 {
		t.Error("responder asked although a verified staple answered")
	}
	scts := collectSCTs(&cs, cs.PeerCertificates[0], res.StapleResponse)
	if len(scts) != 2 || scts[0].Source != SCTSourceOCSP {
		t.Errorf("SCTs from staple = %+v, want 2", scts)
	}
}

func TestRevocationStapleForgedNotGood(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{MustStaple: true})
	// Signed by the untrusted intermediate: must not count as good.
	cert.OCSPStaple = pki.OCSPResponse(cert.Leaf, pki.UntrustedIntermediate, ocsp.Good)
	res := checkRevocation(context.Background(), revocationInput{Leaf: cert.Leaf, Issuer: pki.Intermediate.Cert, Staple: cert.OCSPStaple},
		revocationOptions{Now: pki.Now, Offline: true})
	if res.StapleVerified || res.Revocation.Status == RevStatusGood {
		t.Errorf("forged staple accepted: %+v", res.Revocation)
	}
	if !hasCode(res.Findings, CodeOCSPUnavailable) || !hasCode(res.Findings, CodeMustStapleMissing) {
		t.Errorf("findings %v", findingCodes(res.Findings))
	}
}

func TestRevocationStapleRevoked(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	staple := pki.OCSPResponse(cert.Leaf, pki.Intermediate, ocsp.Revoked)
	res := checkRevocation(context.Background(), revocationInput{Leaf: cert.Leaf, Issuer: pki.Intermediate.Cert, Staple: staple},
		revocationOptions{Now: pki.Now})
	if res.Revocation.Status != RevStatusRevoked || !hasCode(res.Findings, CodeRevoked) {
		t.Errorf("got %+v %v", res.Revocation, findingCodes(res.Findings))
	}
}

func TestMustStapleMissing(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{MustStaple: true})
	if !hasMustStaple(cert.Leaf) {
		t.Fatal("MustStaple did not see the TLS feature extension")
	}
	if hasMustStaple(pki.Leaf(testlab.LeafOpts{}).Leaf) {
		t.Fatal("MustStaple on a plain leaf")
	}
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	cs := handshakeState(t, addr, testlab.DefaultHost)
	res := checkRevocation(context.Background(), revocationInput{Leaf: cs.PeerCertificates[0], Issuer: pki.Intermediate.Cert, Staple: cs.OCSPResponse},
		revocationOptions{Now: pki.Now})
	var got *Finding
	for i, f := range res.Findings {
		if f.Code == CodeMustStapleMissing {
			got = &res.Findings[i]
		}
	}
	if got == nil || got.Severity != SeverityCritical {
		t.Fatalf("findings %v, want must_staple_missing critical", findingCodes(res.Findings))
	}
}

func TestRevocationIntermediate(t *testing.T) {
	pki := testlab.NewPKI(t)
	// The root revokes the intermediate by CRL.
	inter := *pki.Intermediate.Cert
	inter.CRLDistributionPoints = []string{pki.ServeCRL(pki.Root, []*big.Int{inter.SerialNumber}, nil)}
	leaf := pki.Leaf(testlab.LeafOpts{})
	res := checkRevocation(context.Background(), revocationInput{
		Leaf: leaf.Leaf, Issuer: pki.Intermediate.Cert,
		Intermediates: [][2]*x509.Certificate{{&inter, pki.Root.Cert}},
	}, revocationOptions{Now: pki.Now})
	if !hasCode(res.Findings, CodeRevoked) || len(res.Revocation.Intermediates) != 1 {
		t.Errorf("revoked intermediate not reported: %+v %v", res.Revocation, findingCodes(res.Findings))
	}
}

// A delegated responder must carry the OCSP signing usage for "good" to be
// believed; a "revoked" from a certificate the issuer signed is believed.
func TestOCSPDelegatedResponder(t *testing.T) {
	pki := testlab.NewPKI(t)
	leaf := pki.Leaf(testlab.LeafOpts{}).Leaf
	mkDelegate := func(eku []x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "responder"},
			NotBefore: pki.Now.Add(-time.Hour), NotAfter: pki.Now.Add(time.Hour), ExtKeyUsage: eku}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.Intermediate.Cert, key.Public(), pki.Intermediate.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	resp := func(status int, c *x509.Certificate, k *ecdsa.PrivateKey) []byte {
		der, err := ocsp.CreateResponse(pki.Intermediate.Cert, c, ocsp.Response{Status: status, SerialNumber: leaf.SerialNumber, Certificate: c,
			ThisUpdate: pki.Now.Add(-time.Minute), NextUpdate: pki.Now.Add(time.Hour), RevokedAt: pki.Now.Add(-time.Minute)}, k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	good, goodKey := mkDelegate([]x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning})
	if _, err := acceptOCSP(verifyOCSP(resp(ocsp.Good, good, goodKey), leaf, pki.Intermediate.Cert, pki.Now)); err != nil {
		t.Errorf("proper delegate refused: %v", err)
	}
	weak, weakKey := mkDelegate([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	if _, err := acceptOCSP(verifyOCSP(resp(ocsp.Good, weak, weakKey), leaf, pki.Intermediate.Cert, pki.Now)); err == nil {
		t.Error("good from a delegate without OCSP signing usage accepted")
	}
	if r, err := acceptOCSP(verifyOCSP(resp(ocsp.Revoked, weak, weakKey), leaf, pki.Intermediate.Cert, pki.Now)); err != nil || r.Status != ocsp.Revoked {
		t.Errorf("revoked from the issuer's own certificate refused: %v", err)
	}
}
