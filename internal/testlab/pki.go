// Package testlab builds, at test time, a small PKI and loopback servers that
// show every defect tlswatch diagnoses. Nothing here touches the network
// beyond 127.0.0.1 and no certificate is ever embedded: each test run makes
// its own, so nothing expires next year.
//
// Typical use from any package's tests:
//
//	pki := testlab.NewPKI(t)
//	sc := testlab.Start(t, pki, testlab.ScenarioExpired)
//	// probe sc.Host on sc.Port, dialling sc.IP, trusting pki.Roots()
package testlab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DefaultHost is the DNS name lab leaf certificates carry unless told
// otherwise. It never resolves: probes dial the scenario's IP instead.
const DefaultHost = "tlswatch.test"

// KeyType selects the leaf (or CA) key.
type KeyType int

const (
	KeyECDSAP256 KeyType = iota // default
	KeyRSA2048
	KeyRSA1024
	KeyECDSAP224 // a weak EC key (< 256 bits)
)

// Authority is a CA certificate with its key.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// DER returns the certificate bytes.
func (a *Authority) DER() []byte { return a.Cert.Raw }

// PEM returns the certificate in PEM form.
func (a *Authority) PEM() string { return EncodePEM(a.Cert) }

// PKI is a generated hierarchy:
//
//	Root (trusted) -> Intermediate -> leaves
//	UntrustedRoot  -> UntrustedIntermediate -> leaves (when asked)
//
// Now is the instant every validity period is computed from; tests that
// classify expiry pin their probe clock to it.
type PKI struct {
	Now                   time.Time
	Root                  *Authority
	Intermediate          *Authority
	UntrustedRoot         *Authority
	UntrustedIntermediate *Authority

	t      testing.TB
	serial atomic.Int64
}

// NewPKI generates the hierarchy. It is cheap (ECDSA keys) and safe to call
// once per test.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{t: t, Now: time.Now().Truncate(time.Second)}
	p.serial.Store(time.Now().UnixNano() & 0xffffffff)
	p.Root = p.NewRoot("tlswatch Test Root CA")
	p.Intermediate = p.NewIntermediate(p.Root, CAOpts{CommonName: "tlswatch Test Intermediate CA"})
	p.UntrustedRoot = p.NewRoot("tlswatch Untrusted Root CA")
	p.UntrustedIntermediate = p.NewIntermediate(p.UntrustedRoot, CAOpts{CommonName: "tlswatch Untrusted Intermediate CA"})
	return p
}

// Roots returns a fresh pool holding only the trusted Root: what a probe's
// Options.Roots should be in tests.
func (p *PKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root.Cert)
	return pool
}

// CAOpts shape an extra CA certificate.
type CAOpts struct {
	CommonName string
	// Organization of the subject; empty means "tlswatch lab", "-" none.
	Organization string
	NotBefore    time.Time // zero: Now - 2 years
	NotAfter     time.Time // zero: Now + 5 years
	Key          KeyType
	AIAURL       string // caIssuers URL pointing at the parent
	// SignatureAlgorithm of a root's self-signature (NewRootWith only).
	SignatureAlgorithm x509.SignatureAlgorithm
}

// NewRoot makes a self-signed CA.
func (p *PKI) NewRoot(cn string) *Authority {
	p.t.Helper()
	return p.NewRootWith(CAOpts{CommonName: cn})
}

// NewRootWith makes a self-signed CA shaped by o (AIAURL is ignored).
// A SHA-1 SignatureAlgorithm gives the old kind of root whose
// self-signature no client checks.
func (p *PKI) NewRootWith(o CAOpts) *Authority {
	p.t.Helper()
	if o.NotBefore.IsZero() {
		o.NotBefore = p.Now.AddDate(-3, 0, 0)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = p.Now.AddDate(10, 0, 0)
	}
	key := p.key(o.Key)
	tmpl := p.caTemplate(o)
	var der []byte
	var err error
	if isSHA1(o.SignatureAlgorithm) {
		der, err = createSHA1(tmpl, tmpl, key.Public(), key)
	} else {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	}
	if err != nil {
		p.t.Fatalf("testlab: create root: %v", err)
	}
	return &Authority{Cert: mustParse(p.t, der), Key: key}
}

// caTemplate is the certificate of a lab CA shaped by o.
func (p *PKI) caTemplate(o CAOpts) *x509.Certificate {
	subject := pkix.Name{CommonName: o.CommonName, Organization: []string{"tlswatch lab"}}
	switch o.Organization {
	case "":
	case "-":
		subject.Organization = nil
	default:
		subject.Organization = []string{o.Organization}
	}
	return &x509.Certificate{
		SerialNumber:          p.nextSerial(),
		Subject:               subject,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// NewIntermediate makes a CA signed by parent (expired ones included, for the
// expired_intermediate scenario).
func (p *PKI) NewIntermediate(parent *Authority, o CAOpts) *Authority {
	p.t.Helper()
	if o.CommonName == "" {
		o.CommonName = fmt.Sprintf("tlswatch Intermediate %d", p.serial.Load())
	}
	if o.NotBefore.IsZero() {
		// Far enough back that an expired lab leaf was issued inside it.
		o.NotBefore = p.Now.AddDate(-2, 0, 0)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = p.Now.AddDate(5, 0, 0)
	}
	key := p.key(o.Key)
	tmpl := p.caTemplate(o)
	if o.AIAURL != "" {
		tmpl.IssuingCertificateURL = []string{o.AIAURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		p.t.Fatalf("testlab: create intermediate: %v", err)
	}
	return &Authority{Cert: mustParse(p.t, der), Key: key}
}

// LeafOpts describe a server (or client) certificate. The zero value is a
// valid ECDSA P-256 leaf for DefaultHost, issued by the trusted intermediate,
// valid from Now-1h for 90 days, served with its intermediate. A leaf given
// only its NotAfter is a 90-day certificate, as ACME CAs issue, unless that
// would start after Now-1h: expiry is judged against the lifetime, so
// "expires in 5 days" means 85 days into 90.
type LeafOpts struct {
	CommonName string   // default: first DNS name, else DefaultHost
	DNSNames   []string // default [DefaultHost] unless IPs or NoSAN are set
	IPs        []net.IP
	NoSAN      bool // CN only: no subjectAltName extension at all

	NotBefore time.Time // zero: Now - 1h
	NotAfter  time.Time // zero: Now + 90 days

	Key KeyType
	// SignatureAlgorithm of the issuer's signature on the leaf. SHA-1
	// variants are signed by hand because crypto/x509 refuses them.
	SignatureAlgorithm x509.SignatureAlgorithm

	Issuer     *Authority // default: the trusted Intermediate
	SelfSigned bool       // ignore Issuer; the leaf signs itself

	AIAURL     string // Authority Information Access caIssuers
	OCSPURL    string
	CRLURL     string
	MustStaple bool // TLS feature extension (status_request)
	ClientAuth bool // ExtKeyUsageClientAuth instead of ServerAuth

	// ExtraExtensions are added as is (e.g. a huge non-critical extension
	// for the hostile lab's oversized certificate).
	ExtraExtensions []pkix.Extension

	// Chain overrides what is served after the leaf. Nil means the issuer
	// path up to (excluding) the root; use an empty non-nil slice to serve
	// the leaf alone.
	Chain []*x509.Certificate
}

// Leaf issues a certificate and returns it ready for a tls.Config: the leaf
// first, then the chain to serve, Leaf field parsed.
func (p *PKI) Leaf(o LeafOpts) tls.Certificate {
	p.t.Helper()
	key := p.key(o.Key)
	if !o.NoSAN && len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		o.DNSNames = []string{DefaultHost}
	}
	if o.CommonName == "" {
		o.CommonName = DefaultHost
		if len(o.DNSNames) > 0 {
			o.CommonName = o.DNSNames[0]
		}
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = p.Now.Add(90 * 24 * time.Hour)
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = p.Now.Add(-time.Hour)
		if nb := o.NotAfter.Add(-90 * 24 * time.Hour); nb.Before(o.NotBefore) {
			o.NotBefore = nb
		}
	}
	tmpl := leafTemplate(p.nextSerial(), o)
	parentCert, parentKey := tmpl, crypto.Signer(key)
	var chain []*x509.Certificate
	if !o.SelfSigned {
		iss := o.Issuer
		if iss == nil {
			iss = p.Intermediate
		}
		parentCert, parentKey = iss.Cert, iss.Key
		chain = p.pathBelowRoot(iss)
	}
	if o.Chain != nil {
		chain = o.Chain
	}

	var der []byte
	var err error
	if isSHA1(o.SignatureAlgorithm) {
		der, err = createSHA1(tmpl, parentCert, key.Public(), parentKey)
	} else {
		tmpl.SignatureAlgorithm = o.SignatureAlgorithm
		der, err = x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	}
	if err != nil {
		p.t.Fatalf("testlab: create leaf: %v", err)
	}
	leaf := mustParse(p.t, der)
	out := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}

// leafTemplate is the leaf certificate o asks for (defaults filled).
func leafTemplate(serial *big.Int, o LeafOpts) *x509.Certificate {
	eku := x509.ExtKeyUsageServerAuth
	if o.ClientAuth {
		eku = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.CommonName},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
	}
	if !o.NoSAN {
		tmpl.DNSNames = o.DNSNames
		tmpl.IPAddresses = o.IPs
	}
	if o.AIAURL != "" {
		tmpl.IssuingCertificateURL = []string{o.AIAURL}
	}
	if o.OCSPURL != "" {
		tmpl.OCSPServer = []string{o.OCSPURL}
	}
	if o.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{o.CRLURL}
	}
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, o.ExtraExtensions...)
	if o.MustStaple {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{
			Id:    OIDMustStaple,
			Value: []byte{0x30, 0x03, 0x02, 0x01, 0x05}, // SEQUENCE { INTEGER 5 (status_request) }
		})
	}
	return tmpl
}

// pathBelowRoot returns iss and its known ancestors up to, excluding, the
// self-signed root — the chain a correct server serves.
func (p *PKI) pathBelowRoot(iss *Authority) []*x509.Certificate {
	var out []*x509.Certificate
	known := []*Authority{p.Root, p.Intermediate, p.UntrustedRoot, p.UntrustedIntermediate}
	cur := iss.Cert
	for i := 0; i < 5; i++ {
		if isSelfSigned(cur) {
			break
		}
		out = append(out, cur)
		var next *x509.Certificate
		for _, k := range known {
			if k != nil && cur.CheckSignatureFrom(k.Cert) == nil && k.Cert != cur {
				next = k.Cert
				break
			}
		}
		if next == nil {
			break
		}
		cur = next
	}
	return out
}

// OIDMustStaple is the TLS feature extension (RFC 7633).
var OIDMustStaple = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}

func (p *PKI) nextSerial() *big.Int { return big.NewInt(p.serial.Add(1)) }

var (
	keyMu    sync.Mutex
	keyCache = map[KeyType]crypto.Signer{}
)

// key returns a key of the type. RSA keys are cached per process because
// generating them dominates test time; ECDSA keys are fresh so that every
// certificate has its own identity.
func (p *PKI) key(kt KeyType) crypto.Signer {
	p.t.Helper()
	switch kt {
	case KeyECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			p.t.Fatalf("testlab: ecdsa key: %v", err)
		}
		return k
	case KeyECDSAP224:
		k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		if err != nil {
			p.t.Fatalf("testlab: ecdsa key: %v", err)
		}
		return k
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[kt]; ok {
		return k
	}
	bits := 2048
	if kt == KeyRSA1024 {
		bits = 1024
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		p.t.Fatalf("testlab: rsa key: %v", err)
	}
	keyCache[kt] = k
	return k
}

func isSHA1(a x509.SignatureAlgorithm) bool {
	return a == x509.SHA1WithRSA || a == x509.ECDSAWithSHA1
}

var (
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
)

// createSHA1 issues a certificate signed with SHA-1, which crypto/x509
// refuses to produce: it lets x509 build the TBSCertificate with a modern
// algorithm, swaps the algorithm identifier, and signs the result by hand.
func createSHA1(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("create base certificate: %w", err)
	}
	var outer struct {
		TBS    asn1.RawValue
		SigAlg pkix.AlgorithmIdentifier
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	var fields []asn1.RawValue
	if _, err := asn1.Unmarshal(outer.TBS.FullBytes, &fields); err != nil {
		return nil, fmt.Errorf("parse tbs: %w", err)
	}
	var alg pkix.AlgorithmIdentifier
	var hashed [sha1.Size]byte
	switch signer.Public().(type) {
	case *rsa.PublicKey:
		alg = pkix.AlgorithmIdentifier{Algorithm: oidSHA1WithRSA, Parameters: asn1.NullRawValue}
	case *ecdsa.PublicKey:
		alg = pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA1}
	default:
		return nil, fmt.Errorf("sha-1 signing needs an RSA or ECDSA issuer key")
	}
	algDER, err := asn1.Marshal(alg)
	if err != nil {
		return nil, err
	}
	// fields[0] is the explicit [0] version, fields[1] the serial, fields[2]
	// the signature algorithm.
	fields[2] = asn1.RawValue{FullBytes: algDER}
	tbs, err := asn1.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("marshal tbs: %w", err)
	}
	hashed = sha1.Sum(tbs)
	sig, err := signer.Sign(rand.Reader, hashed[:], crypto.SHA1)
	if err != nil {
		return nil, fmt.Errorf("sign sha-1: %w", err)
	}
	outer.TBS = asn1.RawValue{FullBytes: tbs}
	outer.SigAlg = alg
	outer.Sig = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	return asn1.Marshal(outer)
}

// isSelfSigned checks the signature directly: CheckSignatureFrom would
// refuse a parent that is not a CA.
func isSelfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testlab: parse generated certificate: %v", err)
	}
	return c
}

// EncodePEM returns certificates as concatenated PEM blocks.
func EncodePEM(certs ...*x509.Certificate) string {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(b)
}

// ChainPEM returns the served chain of a tls.Certificate as PEM.
func ChainPEM(c tls.Certificate) string {
	var b []byte
	for _, der := range c.Certificate {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return string(b)
}

// WriteRootPEM writes the trusted Root to a PEM file in t.TempDir() and
// returns its path, for --ca-file and TLSWATCH_CA_FILE in end-to-end tests.
func (p *PKI) WriteRootPEM(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tlswatch-test-root.pem")
	if err := os.WriteFile(path, []byte(p.Root.PEM()), 0o600); err != nil {
		t.Fatalf("testlab: write root: %v", err)
	}
	return path
}
