package probe

import (
	"context"
	"crypto/tls"
	"net"
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

func cipherAccepted(cs []CipherInfo, version, name string) bool {
	for _, c := range cs {
		if c.Version == version && c.Name == name {
			return true
		}
	}
	return false
}

func TestCiphersWeak(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048})
	addr := testlab.ServeTLS(t, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS10,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	proto, ciphers, fs := enumerateCiphers(ctx, tcpDialer(addr), testlab.DefaultHost, nil)
	for _, v := range []string{"TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3"} {
		found := false
		for _, p := range proto {
			if p.Version == v && p.Accepted && p.Tested {
				found = true
			}
		}
		if !found {
			t.Errorf("%s not accepted: %+v", v, proto)
		}
	}
	for _, want := range []string{"TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"} {
		if !cipherAccepted(ciphers, "TLS 1.2", want) {
			t.Errorf("%s not found at TLS 1.2: %+v", want, ciphers)
		}
	}
	if !cipherAccepted(ciphers, "TLS 1.0", "TLS_RSA_WITH_3DES_EDE_CBC_SHA") {
		t.Errorf("3DES at TLS 1.0 not found: %+v", ciphers)
	}
	if len(fs) == 0 || fs[0].Code != CodeWeakCipher || fs[0].Severity != SeverityWarning {
		t.Fatalf("findings %v, want weak_cipher", findingCodes(fs))
	}
}

func TestCiphersModernServer(t *testing.T) {
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	proto, ciphers, fs := enumerateCiphers(ctx, tcpDialer(addr), testlab.DefaultHost, nil)
	if len(fs) != 0 {
		t.Errorf("findings %v on Go's defaults: %+v", findingCodes(fs), ciphers)
	}
	for _, p := range proto {
		if (p.Version == "TLS 1.0" || p.Version == "TLS 1.1") && p.Accepted {
			t.Errorf("%s accepted by a default Go server", p.Version)
		}
		if p.Version == "SSL 3.0" && p.Tested {
			t.Error("SSLv3 claimed tested")
		}
	}
}

// A TLS 1.2 server with CBC suites only and no TLS 1.3.
func TestCiphersCBCOnly(t *testing.T) {
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLS(t, &tls.Config{
		Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})},
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
	})
	_, _, fs := enumerateCiphers(context.Background(), tcpDialer(addr), testlab.DefaultHost, nil)
	if !hasCode(fs, CodeWeakCipher) {
		t.Fatalf("findings %v, want weak_cipher for CBC only", findingCodes(fs))
	}
}

// A server that demands a client certificate still has its suites listed.
func TestCiphersMTLSServer(t *testing.T) {
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLS(t, &tls.Config{
		Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})},
		ClientAuth:   tls.RequireAnyClientCert,
		MaxVersion:   tls.VersionTLS12,
	})
	proto, ciphers, _ := enumerateCiphers(context.Background(), tcpDialer(addr), testlab.DefaultHost, nil)
	if len(ciphers) == 0 {
		t.Fatalf("no suites found behind mTLS: %+v", proto)
	}
}
