package probe

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

func tcpDialer(addr string) dialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func cipherOf(cs []CipherInfo, version, name string) *CipherInfo {
	for i := range cs {
		if cs[i].Version == version && cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func protoAccepted(ps []ProtocolInfo, version string) bool {
	for _, p := range ps {
		if p.Version == version {
			return p.Accepted && p.Tested
		}
	}
	return false
}

func scanOf(t *testing.T, addr string) (cipherScan, string, []Finding) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scan := enumerateCiphers(ctx, tcpDialer(addr), testlab.DefaultHost)
	profile, fs := cipherVerdict(scan)
	return scan, profile, fs
}

// wantWeakCipher checks the one weak_cipher finding's severity and that
// its message names each of subs.
func wantWeakCipher(t *testing.T, fs []Finding, sev Severity, subs ...string) {
	t.Helper()
	var got []Finding
	for _, f := range fs {
		if f.Code == CodeWeakCipher {
			got = append(got, f)
		}
	}
	if sev == "" {
		if len(got) != 0 {
			t.Errorf("weak_cipher reported: %v", got)
		}
		return
	}
	if len(got) != 1 || got[0].Severity != sev {
		t.Fatalf("weak_cipher findings %v, want one %s", got, sev)
	}
	for _, s := range subs {
		if !strings.Contains(got[0].Message, s) {
			t.Errorf("weak_cipher message %q lacks %q", got[0].Message, s)
		}
	}
}

// Grading against Mozilla's profiles, on Go servers: what only misses
// "intermediate" (CBC, RSA key exchange, 3DES, TLS 1.0) is info, what falls
// outside "old" (RC4) or has no forward secrecy at all is a warning.
func TestCiphersGraded(t *testing.T) {
	pki := testlab.NewPKI(t)
	rsa := pki.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048})
	cases := []struct {
		name    string
		cfg     *tls.Config
		profile string
		sev     Severity
		subs    []string
		suites  map[string]string // "version name" -> profile
	}{
		{"go defaults", &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}}, ProfileOld, SeverityInfo,
			[]string{"meets Mozilla's old profile", "CBC mode (MAC-then-encrypt: Lucky13 and padding oracles): TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"},
			map[string]string{"TLS 1.3 TLS_AES_128_GCM_SHA256": "modern", "TLS 1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "intermediate"}},
		{"aead only", &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})},
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305}},
			ProfileIntermediate, "", nil, nil},
		{"tls 1.3 only", &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}, MinVersion: tls.VersionTLS13},
			ProfileModern, "", nil, nil},
		{"3des and rsa", &tls.Config{Certificates: []tls.Certificate{rsa}, MinVersion: tls.VersionTLS10,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}},
			ProfileOld, SeverityInfo, []string{"3DES has a 64-bit block (Sweet32): TLS_RSA_WITH_3DES_EDE_CBC_SHA", "RSA key exchange: no forward secrecy: TLS_RSA_WITH_AES_128_CBC_SHA"},
			map[string]string{"TLS 1.0 TLS_RSA_WITH_3DES_EDE_CBC_SHA": "old"}},
		{"cbc only", &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
			ProfileOld, SeverityInfo, []string{"CBC mode"}, nil},
		{"rc4", &tls.Config{Certificates: []tls.Certificate{rsa}, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA}},
			ProfileNone, SeverityWarning, []string{"[RC4 is broken (RFC 7465): TLS_ECDHE_RSA_WITH_RC4_128_SHA]"},
			map[string]string{"TLS 1.2 TLS_ECDHE_RSA_WITH_RC4_128_SHA": "none"}},
		{"no forward secrecy", &tls.Config{Certificates: []tls.Certificate{rsa}, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}},
			ProfileOld, SeverityWarning, []string{"no suite it accepts has forward secrecy"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scan, profile, fs := scanOf(t, testlab.ServeTLS(t, tc.cfg))
			if profile != tc.profile {
				t.Errorf("profile %q, want %q; suites %+v", profile, tc.profile, scan.ciphers)
			}
			wantWeakCipher(t, fs, tc.sev, tc.subs...)
			for key, want := range tc.suites {
				v, name, _ := strings.Cut(key, " TLS_")
				if c := cipherOf(scan.ciphers, v, "TLS_"+name); c == nil || c.Profile != want || c.Weak != (want == "none") {
					t.Errorf("%s: %+v, want profile %s", key, c, want)
				}
			}
		})
	}
}

// Every version Go's server speaks is found; SSL 3.0 is tested and
// refused; SSL 2.0 is what no client here can test.
func TestCiphersProtocols(t *testing.T) {
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048})},
		MinVersion: tls.VersionTLS10})
	scan, _, _ := scanOf(t, addr)
	for _, v := range []string{"TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3"} {
		if !protoAccepted(scan.protos, v) {
			t.Errorf("%s not accepted: %+v", v, scan.protos)
		}
	}
	for _, p := range scan.protos {
		if (p.Version == "SSL 3.0" && (!p.Tested || p.Accepted)) || (p.Version == "SSL 2.0" && p.Tested) {
			t.Errorf("%+v", p)
		}
	}
	if !slices.Contains(scan.notTested, "SSL 2.0") || slices.ContainsFunc(scan.notTested, func(s string) bool { return strings.Contains(s, "DHE") }) {
		t.Errorf("not tested %q", scan.notTested)
	}
}

// A server that demands a client certificate still has its suites listed:
// the server's choice is in its ServerHello, before it asks.
func TestCiphersMTLSServer(t *testing.T) {
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLS(t, &tls.Config{
		Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})},
		ClientAuth:   tls.RequireAnyClientCert,
		MaxVersion:   tls.VersionTLS12,
	})
	scan, _, _ := scanOf(t, addr)
	if len(scan.ciphers) == 0 || !protoAccepted(scan.protos, "TLS 1.2") {
		t.Fatalf("no suites found behind mTLS: %+v", scan.protos)
	}
}

// DHE, which Go's client cannot speak, against OpenSSL: the group size is
// measured (weak_dh under 2048 bits, Logjam class), suites zcrypto cannot
// complete (CAMELLIA) are still listed, and a 1024-bit group keeps the
// server at Mozilla's old profile.
func TestCiphersOpenSSLDHE(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048})
	dh1024 := filepath.Join(t.TempDir(), "dh1024.pem")
	if err := os.WriteFile(dh1024, []byte(oakleyGroup2PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		dhBits  int
		weakDH  bool
		profile string
		listed  []string
	}{
		{"dhe-1024", []string{"-tls1_2", "-dhparam", dh1024, "-cipher", "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-CAMELLIA128-SHA:ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"},
			1024, true, ProfileOld, []string{"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}},
		{"dhe-2048", []string{"-cipher", "DHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"},
			2048, false, ProfileIntermediate, []string{"TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scan, profile, fs := scanOf(t, opensslServer(t, cert, tc.args...))
			for _, name := range tc.listed {
				if !slices.ContainsFunc(scan.ciphers, func(c CipherInfo) bool { return c.Name == name }) {
					t.Errorf("%s not found: %+v", name, scan.ciphers)
				}
			}
			for _, c := range scan.ciphers {
				if isDHE(c.Name) && c.DHBits != tc.dhBits {
					t.Errorf("%s: DH %d bits, want %d", c.Name, c.DHBits, tc.dhBits)
				}
			}
			if got := slices.ContainsFunc(fs, func(f Finding) bool {
				return f.Code == CodeWeakDH && f.Severity == SeverityWarning && strings.Contains(f.Message, "1024-bit")
			}); got != tc.weakDH {
				t.Errorf("weak_dh %v, want %v: %v", got, tc.weakDH, fs)
			}
			if profile != tc.profile {
				t.Errorf("profile %q, want %q: %+v", profile, tc.profile, scan.ciphers)
			}
		})
	}
}

// oakleyGroup2PEM is the 1024-bit MODP group of RFC 2409, as DH parameters.
const oakleyGroup2PEM = `-----BEGIN DH PARAMETERS-----
MIGHAoGBAP//////////yQ/aoiFowjTExmKLgNwc0SkCTgiKZ8x0Agu+pjsTmyJR
Sgh5jjQE3e+VGbPNOkMbMCsKbfJfFDdP4TVtbVHCReSFtXZiXn7G9ExC6aY37WsL
/1y29Aa37e44a/taiZ+lrp8kEXxLH+ZJKGZR7OZTgf//////////AgEC
-----END DH PARAMETERS-----
`
