package probe

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/ocsp"
)

// Certificate Transparency (RFC 6962). A Signed Certificate Timestamp can
// reach a client three ways: embedded in the certificate, in the TLS
// signed_certificate_timestamp extension, or in a stapled OCSP response. CT
// enforcing clients (Chrome, Safari) need SCTs through at least one of them.

var (
	// oidSCTList is the X.509 extension carrying an SCT list in the certificate.
	oidSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
	// oidOCSPSCTList is the OCSP singleExtension carrying an SCT list.
	oidOCSPSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 5}
)

// SCT sources, as reported in SCTInfo.Source.
const (
	SCTSourceCertificate = "certificate"
	SCTSourceTLS         = "tls_extension"
	SCTSourceOCSP        = "ocsp_staple"
)

// maxSCTs bounds how many SCTs one source may contribute: a real certificate
// carries two to five; a list of thousands is an attack on the parser.
const maxSCTs = 64

// SCTInfo is one parsed Signed Certificate Timestamp.
type SCTInfo struct {
	Source    string    `json:"source"`
	Version   int       `json:"version"`
	LogID     string    `json:"log_id"` // hex SHA-256 of the log's key
	Timestamp time.Time `json:"timestamp"`
}

// parseSCTList decodes a TLS-encoded SignedCertificateTimestampList (RFC 6962
// §3.3): a uint16-length-prefixed list of uint16-length-prefixed SCTs.
func parseSCTList(b []byte) ([][]byte, error) {
	s := cryptobyte.String(b)
	var list cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&list) || !s.Empty() {
		return nil, errors.New("sct list: bad outer length")
	}
	var out [][]byte
	for !list.Empty() {
		var sct cryptobyte.String
		if !list.ReadUint16LengthPrefixed(&sct) || len(sct) == 0 {
			return out, errors.New("sct list: bad entry length")
		}
		if len(out) >= maxSCTs {
			return out, fmt.Errorf("sct list: more than %d entries", maxSCTs)
		}
		out = append(out, []byte(sct))
	}
	return out, nil
}

// parseSCT decodes one serialized SCT (RFC 6962 §3.2): version, log id,
// timestamp, extensions, digitally-signed signature. Only v1 is defined.
func parseSCT(b []byte, source string) (SCTInfo, error) {
	s := cryptobyte.String(b)
	var version uint8
	var logID []byte
	var ts uint64
	var exts, sig cryptobyte.String
	var hashAlg, sigAlg uint8
	if !s.ReadUint8(&version) || !s.ReadBytes(&logID, 32) || !s.ReadUint64(&ts) ||
		!s.ReadUint16LengthPrefixed(&exts) || !s.ReadUint8(&hashAlg) || !s.ReadUint8(&sigAlg) ||
		!s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return SCTInfo{}, errors.New("sct: truncated or trailing data")
	}
	if version != 0 {
		return SCTInfo{}, fmt.Errorf("sct: unknown version %d", version)
	}
	if len(sig) == 0 {
		return SCTInfo{}, errors.New("sct: empty signature")
	}
	return SCTInfo{
		Source:    source,
		Version:   int(version) + 1,
		LogID:     hex.EncodeToString(logID),
		Timestamp: time.UnixMilli(int64(ts)).UTC(),
	}, nil
}

// sctsFromExtensionValue parses an extension whose value is an OCTET STRING
// wrapping an SCT list (the form used both in certificates and in OCSP).
func sctsFromExtensionValue(v []byte, source string) ([]SCTInfo, error) {
	var inner []byte
	rest, err := asn1.Unmarshal(v, &inner)
	if err != nil || len(rest) != 0 {
		return nil, errors.New("sct extension: not an OCTET STRING")
	}
	raws, err := parseSCTList(inner)
	out := parseSCTs(raws, source)
	return out, err
}

func parseSCTs(raws [][]byte, source string) []SCTInfo {
	var out []SCTInfo
	for i, r := range raws {
		if i >= maxSCTs {
			break
		}
		if s, err := parseSCT(r, source); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// certificateSCTs returns the SCTs embedded in a certificate.
func certificateSCTs(c *x509.Certificate) []SCTInfo {
	if c == nil {
		return nil
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSCTList) {
			s, _ := sctsFromExtensionValue(e.Value, SCTSourceCertificate)
			return s
		}
	}
	return nil
}

// ocspResponseSCTs returns the SCTs in an OCSP response's singleExtensions.
// The response must already be verified by the caller; SCTs from an
// unverified response would be counted on a forger's word.
func ocspResponseSCTs(r *ocsp.Response) []SCTInfo {
	if r == nil {
		return nil
	}
	for _, e := range r.Extensions {
		if e.Id.Equal(oidOCSPSCTList) {
			s, _ := sctsFromExtensionValue(e.Value, SCTSourceOCSP)
			return s
		}
	}
	return nil
}

// collectSCTs gathers the SCTs from all three sources. staple is the verified
// stapled OCSP response, or nil.
func collectSCTs(cs *tls.ConnectionState, leaf *x509.Certificate, staple *ocsp.Response) []SCTInfo {
	out := certificateSCTs(leaf)
	if cs != nil {
		n := cs.SignedCertificateTimestamps
		if len(n) > maxSCTs {
			n = n[:maxSCTs]
		}
		out = append(out, parseSCTs(n, SCTSourceTLS)...)
	}
	return append(out, ocspResponseSCTs(staple)...)
}

// sctFindings says no_sct when no source carried a single SCT. public tells
// whether a public store trusts the chain, where CT is enforced.
func sctFindings(scts []SCTInfo, public bool) []Finding {
	if len(scts) > 0 {
		return nil
	}
	msg := "no Signed Certificate Timestamp in the certificate, the TLS handshake or a stapled OCSP response"
	if public {
		msg += "; Chrome and Safari reject such a certificate from a public CA"
	} else {
		msg += "; CT-enforcing browsers would reject it from a public CA (a private CA is exempt)"
	}
	return []Finding{NewFinding(CodeNoSCT, msg)}
}
