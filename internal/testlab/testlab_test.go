package testlab

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func dialLab(t *testing.T, sc *Scenario, min, max uint16) (*tls.Conn, error) {
	t.Helper()
	// Generous: an RSA handshake on a busy CI machine can take seconds;
	// every use expects success or an immediate alert, never a timeout.
	d := &net.Dialer{Timeout: 10 * time.Second}
	return tls.DialWithDialer(d, "tcp", sc.Addr, &tls.Config{
		ServerName:         sc.Host,
		InsecureSkipVerify: true,
		MinVersion:         min,
		MaxVersion:         max,
	})
}

func TestScenariosHandshake(t *testing.T) {
	p := NewPKI(t)
	for _, name := range ScenarioNames() {
		t.Run(name, func(t *testing.T) {
			sc := Start(t, p, name)
			if sc.Cert == nil {
				return
			}
			c, err := dialLab(t, sc, tls.VersionTLS10, tls.VersionTLS13)
			if name == ScenarioClientCertRequired {
				// TLS 1.3: the client finishes first, the server's
				// rejection arrives on the first read.
				if err == nil {
					_, err = c.Read(make([]byte, 1))
					c.Close()
				}
				if err == nil {
					t.Fatal("server accepted a client without certificate")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer c.Close()
			got := c.ConnectionState().PeerCertificates
			if len(got) != len(sc.Cert.Certificate) {
				t.Fatalf("served %d certs, want %d", len(got), len(sc.Cert.Certificate))
			}
		})
	}
}

func TestLeafProperties(t *testing.T) {
	p := NewPKI(t)
	sha1Leaf := p.Leaf(LeafOpts{SignatureAlgorithm: x509.ECDSAWithSHA1}).Leaf
	if sha1Leaf.SignatureAlgorithm != x509.ECDSAWithSHA1 {
		t.Fatalf("sha1 leaf algorithm %v", sha1Leaf.SignatureAlgorithm)
	}
	var insecure x509.InsecureAlgorithmError
	if err := sha1Leaf.CheckSignatureFrom(p.Intermediate.Cert); !errors.As(err, &insecure) {
		t.Fatalf("sha1 leaf check: %v, want InsecureAlgorithmError", err)
	}
	// The hand-made signature must still be mathematically right.
	rsaIss := p.NewIntermediate(p.Root, CAOpts{Key: KeyRSA2048})
	rsaSHA1 := p.Leaf(LeafOpts{Issuer: rsaIss, SignatureAlgorithm: x509.SHA1WithRSA}).Leaf
	if rsaSHA1.SignatureAlgorithm != x509.SHA1WithRSA {
		t.Fatalf("rsa sha1 leaf algorithm %v", rsaSHA1.SignatureAlgorithm)
	}

	ok := p.Leaf(LeafOpts{})
	if _, err := ok.Leaf.Verify(x509.VerifyOptions{Roots: p.Roots(), Intermediates: pool(ok), DNSName: DefaultHost, CurrentTime: p.Now}); err != nil {
		t.Fatalf("valid leaf does not verify: %v", err)
	}
	cn := p.Leaf(LeafOpts{NoSAN: true}).Leaf
	if len(cn.DNSNames) != 0 || cn.Subject.CommonName != DefaultHost {
		t.Fatalf("cn-only leaf: %v %q", cn.DNSNames, cn.Subject.CommonName)
	}
	ss := p.Leaf(LeafOpts{SelfSigned: true})
	if !isSelfSigned(ss.Leaf) || len(ss.Certificate) != 1 {
		t.Fatal("self-signed leaf is not self-signed or carries a chain")
	}
	ms := p.Leaf(LeafOpts{MustStaple: true, OCSPURL: "http://127.0.0.1:1/ocsp", AIAURL: "http://127.0.0.1:1/ca"}).Leaf
	found := false
	for _, e := range ms.Extensions {
		found = found || e.Id.Equal(OIDMustStaple)
	}
	if !found || ms.OCSPServer[0] != "http://127.0.0.1:1/ocsp" || ms.IssuingCertificateURL[0] != "http://127.0.0.1:1/ca" {
		t.Fatal("must-staple/OCSP/AIA not set")
	}
	if k := p.Leaf(LeafOpts{Key: KeyRSA1024}).Leaf.PublicKey; k == nil {
		t.Fatal("no key")
	}
	if !strings.Contains(ChainPEM(ok), "BEGIN CERTIFICATE") {
		t.Fatal("ChainPEM")
	}
}

func pool(c tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		x, _ := x509.ParseCertificate(der)
		p.AddCert(x)
	}
	return p
}

func TestLegacyScenarios(t *testing.T) {
	p := NewPKI(t)
	only := Start(t, p, ScenarioTLS10Only)
	c, err := dialLab(t, only, tls.VersionTLS10, tls.VersionTLS10)
	if err != nil {
		t.Fatalf("tls1.0 handshake: %v", err)
	}
	c.Close()
	if _, err := dialLab(t, only, tls.VersionTLS12, tls.VersionTLS13); err == nil {
		t.Fatal("tls10_only accepted TLS 1.2")
	}
	legacy := Start(t, p, ScenarioLegacyAccepted)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := dialLab(t, legacy, v, v)
		if err != nil {
			t.Fatalf("legacy %x: %v", v, err)
		}
		c.Close()
	}
	valid := Start(t, p, ScenarioValid)
	if _, err := dialLab(t, valid, tls.VersionTLS10, tls.VersionTLS11); err == nil {
		t.Fatal("valid scenario accepted TLS 1.1")
	}
}

func TestNetworkScenarios(t *testing.T) {
	p := NewPKI(t)
	_, err := net.DialTimeout("tcp", Start(t, p, ScenarioRefused).Addr, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("refused: %v", err)
	}

	na := Start(t, p, ScenarioNeverAnswers)
	c, err := net.Dial("tcp", na.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if err := tc.Handshake(); !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
		t.Fatalf("never answers: %v", err)
	}
	c.Close()

	ph := Start(t, p, ScenarioPlainHTTP)
	_, err = dialLab(t, ph, tls.VersionTLS12, tls.VersionTLS13)
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) {
		t.Fatalf("plain http: %v, want RecordHeaderError", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestAIAAndRotation(t *testing.T) {
	p := NewPKI(t)
	sc := Start(t, p, ScenarioMissingIntermediate)
	resp, err := http.Get(sc.AIAURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != string(p.Intermediate.Cert.Raw) || sc.AIAHits.Load() != 1 {
		t.Fatal("AIA server did not serve the intermediate DER")
	}

	first := p.Leaf(LeafOpts{NotAfter: p.Now.Add(5 * 24 * time.Hour)})
	r := ServeRotating(t, first)
	serial := func() string {
		c, err := tls.Dial("tcp", r.Addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if serial() != first.Leaf.SerialNumber.String() {
		t.Fatal("rotating server does not serve the first cert")
	}
	second := p.Leaf(LeafOpts{})
	r.Rotate(second)
	if serial() != second.Leaf.SerialNumber.String() {
		t.Fatal("rotation not applied")
	}
}

func TestWriteRootPEM(t *testing.T) {
	p := NewPKI(t)
	b, err := os.ReadFile(p.WriteRootPEM(t))
	if err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Fatalf("root pem: %v", err)
	}
}
