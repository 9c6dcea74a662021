package probe

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

func TestClientCertExpiring(t *testing.T) {
	pki := testlab.NewPKI(t)
	cases := []struct {
		days int
		want Severity
	}{
		{5, SeverityCritical}, {10, SeverityWarning}, {20, SeverityInfo}, {60, ""}, {-2, SeverityCritical},
	}
	for _, tc := range cases {
		c := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-1",
			NotAfter: pki.Now.Add(time.Duration(tc.days)*24*time.Hour + time.Hour)})
		info, fs := clientCertExpiry(&c, pki.Now, nil)
		if info == nil || info.DaysRemaining != tc.days {
			t.Errorf("%dd: info %+v", tc.days, info)
		}
		if tc.want == "" {
			if len(fs) != 0 {
				t.Errorf("%dd: findings %v", tc.days, findingCodes(fs))
			}
			continue
		}
		if len(fs) != 1 || fs[0].Code != CodeClientCertExpiring || fs[0].Severity != tc.want {
			t.Errorf("%dd: findings %v, want client_cert_expiring %s", tc.days, findingCodes(fs), tc.want)
		}
	}
}

func TestLoadClientCerts(t *testing.T) {
	pki := testlab.NewPKI(t)
	c := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-1"})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, []byte(testlab.ChainPEM(c)), 0o600)
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	got, err := LoadClientCerts([]string{"agent=" + certFile + "," + keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if got["agent"].Leaf == nil || got["agent"].Leaf.Subject.CommonName != "agent-1" {
		t.Fatalf("loaded %+v", got)
	}
	for _, bad := range [][]string{
		{"noequals"}, {"a=" + certFile}, {"bad name=" + certFile + "," + keyFile},
		{"a=" + certFile + "," + filepath.Join(dir, "missing.pem")},
		{"a=" + certFile + "," + keyFile, "a=" + certFile + "," + keyFile},
	} {
		_, err := LoadClientCerts(bad)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "client-cert" {
			t.Errorf("%q: err %v, want a client-cert FieldError", bad, err)
		}
	}
}

// The client certificate is what a real mTLS server accepts.
func TestClientCertPresented(t *testing.T) {
	pki := testlab.NewPKI(t)
	client := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-1",
		NotAfter: pki.Now.Add(5*24*time.Hour + time.Hour)})
	srv := pki.Leaf(testlab.LeafOpts{})
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{srv},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Roots()})
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: testlab.DefaultHost, RootCAs: pki.Roots(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client, nil }})
	if err != nil {
		t.Fatal(err)
	}
	// TLS 1.3 reports a client-cert rejection on the first read.
	conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	buf := make([]byte, 16)
	if _, err := conn.Read(buf); err != nil {
		t.Fatalf("server refused the client certificate: %v", err)
	}
	conn.Close()
	_, fs := clientCertExpiry(&client, pki.Now, nil)
	if !hasCode(fs, CodeClientCertExpiring) || fs[0].Severity != SeverityCritical {
		t.Errorf("findings %v", findingCodes(fs))
	}
}
