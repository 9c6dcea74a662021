package probe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

func TestSCTFromCertificateAndTLS(t *testing.T) {
	pki := testlab.NewPKI(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(77),
		Subject:         pkix.Name{CommonName: testlab.DefaultHost},
		DNSNames:        []string{testlab.DefaultHost},
		NotBefore:       pki.Now.Add(-time.Hour),
		NotAfter:        pki.Now.Add(30 * 24 * time.Hour),
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{testlab.SCTListExtension(oidSCTList, 3)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.Intermediate.Cert, key.Public(), pki.Intermediate.Key)
	if err != nil {
		t.Fatal(err)
	}
	// Also send one SCT in the TLS extension.
	tlsExt := testlab.SCTListExtension(oidSCTList, 1)
	raws, err := sctsFromExtensionValue(tlsExt.Value, SCTSourceTLS)
	if err != nil || len(raws) != 1 {
		t.Fatalf("fixture: %v %v", raws, err)
	}
	inner := tlsExt.Value[2:] // OCTET STRING header (short form) stripped
	list, err := parseSCTList(inner)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der, pki.Intermediate.Cert.Raw}, PrivateKey: key,
		SignedCertificateTimestamps: list}
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	cs := handshakeState(t, addr, testlab.DefaultHost)
	scts := collectSCTs(&cs, cs.PeerCertificates[0], nil)
	var fromCert, fromTLS int
	for _, s := range scts {
		switch s.Source {
		case SCTSourceCertificate:
			fromCert++
		case SCTSourceTLS:
			fromTLS++
		}
	}
	if fromCert != 3 || fromTLS != 1 {
		t.Errorf("cert %d tls %d, want 3 and 1: %+v", fromCert, fromTLS, scts)
	}
	if len(sctFindings(scts, true)) != 0 {
		t.Error("no_sct despite SCTs")
	}
}

func TestNoSCT(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	cs := handshakeState(t, addr, testlab.DefaultHost)
	fs := sctFindings(collectSCTs(&cs, cs.PeerCertificates[0], nil), false)
	if len(fs) != 1 || fs[0].Code != CodeNoSCT || fs[0].Severity != SeverityInfo {
		t.Errorf("got %v, want no_sct info", findingCodes(fs))
	}
}

func TestParseSCTListMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short length":   {0, 5, 0, 1},
		"trailing":       {0, 0, 9},
		"zero-length":    {0, 2, 0, 0},
		"entry too long": {0, 4, 0, 9, 1, 2},
	} {
		if _, err := parseSCTList(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := parseSCT([]byte{1, 2, 3}, SCTSourceTLS); err == nil {
		t.Error("truncated SCT accepted")
	}
	// A list claiming thousands of entries is cut at maxSCTs.
	var list []byte
	for i := 0; i < maxSCTs+10; i++ {
		list = append(list, 0, 1, 0)
	}
	b := append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
	got, err := parseSCTList(b)
	if err == nil || len(got) != maxSCTs {
		t.Errorf("got %d entries, err %v", len(got), err)
	}
}
