package probe

import (
	"crypto/tls"
	"fmt"
	"strings"

	ztls "github.com/zmap/zcrypto/tls"
)

// Cipher suites graded against Mozilla's server-side TLS profiles (version
// 5.7 of the guidelines): "modern" is TLS 1.3 only; "intermediate" adds
// TLS 1.2 with ECDHE or DHE key exchange and an AEAD cipher; "old" accepts
// CBC, RSA key exchange and 3DES as well. A suite weaker than anything
// "old" accepts (RC4, export, NULL, anonymous, single DES, IDEA, MD5) is
// graded "none". The profiles name a list of suites; suites of the same
// kind that the lists leave out for brevity (CAMELLIA, ARIA, AES-CCM) are
// graded like their peers.

// suiteGrade orders the grades: a server meets a profile only when every
// suite it accepts is at least that good.
type suiteGrade int

const (
	gradeNone suiteGrade = iota
	gradeOld
	gradeIntermediate
	gradeModern
)

func (g suiteGrade) String() string {
	return [...]string{"none", "old", "intermediate", "modern"}[g]
}

// TLS 1.3 suites by ID; zcrypto names none of the CCM ones.
var tls13SuiteNames = map[uint16]string{
	0x1301: "TLS_AES_128_GCM_SHA256",
	0x1302: "TLS_AES_256_GCM_SHA384",
	0x1303: "TLS_CHACHA20_POLY1305_SHA256",
	0x1304: "TLS_AES_128_CCM_SHA256",
	0x1305: "TLS_AES_128_CCM_8_SHA256",
}

// suiteName is the IANA name of a suite ID.
func suiteName(id uint16) string {
	if n, ok := tls13SuiteNames[id]; ok {
		return n
	}
	if n := tls.CipherSuiteName(id); !strings.HasPrefix(n, "0x") {
		return n
	}
	if n := ztls.CipherSuiteID(id).String(); n != "unknown" {
		return n
	}
	return fmt.Sprintf("0x%04X", id)
}

// gradeSuite grades a suite by its IANA name and says why it misses the
// next better grade ("" for modern).
func gradeSuite(id uint16, name string) (suiteGrade, string) {
	switch id {
	case 0x1301, 0x1302, 0x1303:
		return gradeModern, ""
	case 0x1304:
		return gradeIntermediate, "not in Mozilla's modern list"
	case 0x1305:
		return gradeOld, "CCM_8 has a 64-bit authentication tag"
	}
	kx, cipher, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(name, "TLS_"), "SSL_"), "_WITH_")
	if why := brokenSuite(kx, cipher); why != "" {
		return gradeNone, why
	}
	fs := strings.HasPrefix(kx, "DHE_") || strings.HasPrefix(kx, "ECDHE_")
	switch {
	case strings.Contains(cipher, "3DES"):
		return gradeOld, "3DES has a 64-bit block (Sweet32)"
	case !fs && (kx == "RSA" || kx == "RSA_FIPS"):
		return gradeOld, "RSA key exchange: no forward secrecy"
	case !fs:
		return gradeOld, "static key exchange: no forward secrecy"
	case strings.HasSuffix(cipher, "_CCM_8"):
		return gradeOld, "CCM_8 has a 64-bit authentication tag"
	case !isAEAD(cipher):
		return gradeOld, "CBC mode (MAC-then-encrypt: Lucky13 and padding oracles)"
	}
	return gradeIntermediate, "TLS 1.2 suite (Mozilla's modern profile is TLS 1.3 only)"
}

// brokenSuite says why a suite is weaker than anything Mozilla's old
// profile accepts, "" when it is not.
func brokenSuite(kx, cipher string) string {
	upper := strings.ToUpper(kx + "_" + cipher)
	switch {
	case kx == "NULL" || strings.HasPrefix(cipher, "NULL"):
		return "no encryption (NULL cipher)"
	case strings.Contains(upper, "ANON"):
		return "anonymous key exchange: the server is not authenticated"
	case strings.Contains(upper, "EXPORT"):
		return "export-grade cryptography (FREAK, Logjam)"
	case strings.Contains(cipher, "RC4"):
		return "RC4 is broken (RFC 7465)"
	case strings.Contains(cipher, "RC2"):
		return "RC2 is an export cipher"
	case strings.HasPrefix(cipher, "DES_") || strings.HasPrefix(cipher, "DES40"):
		return "single DES: a 56-bit key"
	case strings.Contains(cipher, "IDEA"):
		return "IDEA has a 64-bit block and left TLS with 1.2"
	case strings.HasSuffix(cipher, "_MD5"):
		return "MD5 MAC"
	}
	return ""
}

// isAEAD: GCM, ChaCha20-Poly1305 or CCM, by the suite's name.
func isAEAD(name string) bool {
	return strings.Contains(name, "GCM") || strings.Contains(name, "CHACHA20") || strings.Contains(name, "CCM")
}

// isDHE: a finite-field ephemeral Diffie-Hellman suite, whose group size
// matters (weak_dh).
func isDHE(name string) bool {
	return strings.HasPrefix(name, "TLS_DHE_") || strings.HasPrefix(name, "SSL_DHE_")
}
