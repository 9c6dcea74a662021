package foreignlab

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// ClientAuth is what a server asks of the client's certificate.
type ClientAuth int

const (
	NoClientCert      ClientAuth = iota // no CertificateRequest
	RequestClientCert                   // asks; a client without one is served (verified when sent)
	RequireClientCert                   // asks and refuses a client without an accepted one
)

// TLS is a server's TLS configuration in terms every stack understands;
// each Start function translates it into its own directives. Zero fields
// keep the stack's own default, so that a zero TLS (plus Cert) is the
// stack as shipped.
type TLS struct {
	// Cert is the leaf, then every certificate served after it, in
	// order, with its PrivateKey.
	Cert tls.Certificate
	// MinVersion and MaxVersion bound the protocol versions
	// (tls.VersionTLS10 … tls.VersionTLS13); zero keeps the default.
	MinVersion, MaxVersion uint16
	// Versions, when set, lists exactly the versions to enable (a gap
	// such as TLS 1.0 + 1.2 is possible); it overrides Min/MaxVersion.
	Versions []uint16
	// Ciphers is the stack's own cipher list for TLS 1.2 and below:
	// OpenSSL syntax for nginx, openssl, stunnel and dovecot
	// ("ECDHE+AESGCM:@SECLEVEL=0"), a GnuTLS priority string for
	// gnutls-serv ("NORMAL:+ARCFOUR-128"). Empty keeps the default.
	Ciphers string
	// ClientAuth and ClientCAs configure client certificates (mTLS).
	ClientAuth ClientAuth
	ClientCAs  []*x509.Certificate
	// OCSPStaple is a DER OCSP response stapled to every handshake.
	OCSPStaple []byte
	// DHParams are PEM "DH PARAMETERS" for DHE suites (see DHGroup1024).
	DHParams []byte
	// ALPN, when set, is the list of protocols the server negotiates.
	ALPN []string
}

// versionsIn returns the enabled versions, lowest first, or nil for the
// stack's default.
func (c *TLS) versionsIn() []uint16 {
	if len(c.Versions) > 0 {
		return c.Versions
	}
	if c.MinVersion == 0 && c.MaxVersion == 0 {
		return nil
	}
	lo, hi := c.MinVersion, c.MaxVersion
	if lo == 0 {
		lo = tls.VersionTLS10
	}
	if hi == 0 {
		hi = tls.VersionTLS13
	}
	var vs []uint16
	for v := lo; v <= hi; v++ {
		vs = append(vs, v)
	}
	return vs
}

// gaps returns the versions inside the range of vs (lowest to highest)
// that vs leaves out, such as TLS 1.1 in TLS 1.0 + 1.2: stacks that take a
// minimum and a maximum switch those off one by one.
func gaps(vs []uint16) []uint16 {
	var out []uint16
	for v := vs[0]; v <= vs[len(vs)-1]; v++ {
		if !slices.Contains(vs, v) {
			out = append(out, v)
		}
	}
	return out
}

// openSSLVersion names a version as OpenSSL configuration does
// (ssl_protocols, MinProtocol, sslVersionMin).
func openSSLVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// files are a TLS configuration written to disk as PEM.
type files struct {
	cert     string // leaf then chain
	key      string
	leafOnly string // the leaf alone (stacks that take the chain apart)
	chain    string // what follows the leaf; "" when nothing does
	clientCA string // "" when no ClientCAs
	staple   string // DER; "" when none
	dh       string // "" when none
}

// write puts c's certificates and key into dir with the given prefix.
func (c *TLS) write(t testing.TB, dir, prefix string) files {
	t.Helper()
	if len(c.Cert.Certificate) == 0 || c.Cert.PrivateKey == nil {
		t.Fatalf("foreignlab: TLS.Cert needs a certificate and its private key")
	}
	f := files{
		cert:     filepath.Join(dir, prefix+"cert.pem"),
		key:      filepath.Join(dir, prefix+"key.pem"),
		leafOnly: filepath.Join(dir, prefix+"leaf.pem"),
	}
	writeFile(t, f.cert, pemCerts(c.Cert.Certificate...))
	writeFile(t, f.leafOnly, pemCerts(c.Cert.Certificate[0]))
	if len(c.Cert.Certificate) > 1 {
		f.chain = filepath.Join(dir, prefix+"chain.pem")
		writeFile(t, f.chain, pemCerts(c.Cert.Certificate[1:]...))
	}
	writeFile(t, f.key, KeyPEM(t, c.Cert))
	if len(c.ClientCAs) > 0 {
		f.clientCA = filepath.Join(dir, prefix+"client-ca.pem")
		var ders [][]byte
		for _, ca := range c.ClientCAs {
			ders = append(ders, ca.Raw)
		}
		writeFile(t, f.clientCA, pemCerts(ders...))
	}
	if len(c.OCSPStaple) > 0 {
		f.staple = filepath.Join(dir, prefix+"staple.der")
		writeFile(t, f.staple, c.OCSPStaple)
	}
	if len(c.DHParams) > 0 {
		f.dh = filepath.Join(dir, prefix+"dh.pem")
		writeFile(t, f.dh, c.DHParams)
	}
	return f
}

func pemCerts(ders ...[]byte) []byte {
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return b
}

// KeyPEM returns the private key of c as PKCS #8 PEM, which every stack
// here reads.
func KeyPEM(t testing.TB, c tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatalf("foreignlab: marshal private key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteCertFiles writes c as a PEM chain and a PEM key in dir and returns
// both paths (for tlswatch's --client-cert NAME=CERT,KEY).
func WriteCertFiles(t testing.TB, dir, name string, c tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	certPath = filepath.Join(dir, name+".crt")
	keyPath = filepath.Join(dir, name+".key")
	writeFile(t, certPath, pemCerts(c.Certificate...))
	writeFile(t, keyPath, KeyPEM(t, c))
	return certPath, keyPath
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	// 0644: servers that drop privileges read their files after the
	// switch (the directory itself is private to this run).
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("foreignlab: %v", err)
	}
}

// oakleyGroup2 is the 1024-bit MODP group of RFC 2409 (section 6.2), the
// most widely shared 1024-bit prime: the Logjam paper's example of a group
// a nation-state adversary can afford to break.
const oakleyGroup2 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1" +
	"29024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
	"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245" +
	"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
	"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381" +
	"FFFFFFFFFFFFFFFF"

// DHGroup1024 returns PEM "DH PARAMETERS" for the 1024-bit Oakley group 2
// with generator 2: what a server configured a decade ago still serves.
func DHGroup1024() []byte {
	p, _ := new(big.Int).SetString(oakleyGroup2, 16)
	der, err := asn1.Marshal(struct{ P, G *big.Int }{p, big.NewInt(2)})
	if err != nil {
		panic(err) // two integers always encode
	}
	return pem.EncodeToMemory(&pem.Block{Type: "DH PARAMETERS", Bytes: der})
}
