package probe

import (
	//lint:ignore SA1019 only to name legacy DSA keys in reports
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"time"
)

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// certInfo analyses one certificate at now. includePEM adds its PEM text.
func certInfo(c *x509.Certificate, now time.Time, includePEM bool) *CertInfo {
	sum := sha256.Sum256(c.Raw)
	key, _ := keyDescription(c.PublicKey)
	ci := &CertInfo{
		Subject:            c.Subject.String(),
		Issuer:             c.Issuer.String(),
		SANs:               sanStrings(c),
		NotBefore:          c.NotBefore.UTC(),
		NotAfter:           c.NotAfter.UTC(),
		DaysRemaining:      DaysRemaining(c.NotAfter, now),
		Serial:             serialHex(c),
		SHA256:             hex.EncodeToString(sum[:]),
		Key:                key,
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		IsCA:               c.IsCA,
		SelfSigned:         isSelfSigned(c),
		IssuingURLs:        c.IssuingCertificateURL,
		OCSPServers:        c.OCSPServer,
		CRLURLs:            c.CRLDistributionPoints,
		SCTCount:           len(certificateSCTs(c)),
		MustStaple:         hasMustStaple(c),
	}
	if includePEM {
		ci.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return ci
}

// serialHex is the serial number in lower-case hex, as crt.sh shows it.
func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	s := c.SerialNumber.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// sanStrings lists every subject alternative name, never nil.
func sanStrings(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.DNSNames)+len(c.IPAddresses))
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, c.EmailAddresses...)
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

// keyDescription names a public key ("ECDSA P-256", "RSA 2048") and says
// whether it is weak (RSA < 2048 bits, EC < 256 bits, DSA).
func keyDescription(pub any) (string, bool) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		n := k.N.BitLen()
		return fmt.Sprintf("RSA %d", n), n < 2048
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return "ECDSA", true
		}
		p := k.Curve.Params()
		return "ECDSA " + p.Name, p.BitSize < 256
	case ed25519.PublicKey:
		return "Ed25519", false
	case *dsa.PublicKey:
		return fmt.Sprintf("DSA %d", k.P.BitLen()), true
	}
	return "unknown", false
}
