package probe

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// Servers no one here wrote: behaviours Go's crypto/tls server cannot
// show (DHE with a chosen group, OpenSSL's own alerts) are tested against
// `openssl s_server`. A missing openssl fails the test, it does not skip.

// opensslServer starts `openssl s_server` on a free loopback port serving
// cert (leaf, then its chain) with args added, and returns its address once
// it accepts connections. It stops at cleanup.
func opensslServer(t *testing.T, cert tls.Certificate, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required for this test (apt-get install -y openssl): %v", err)
	}
	dir := t.TempDir()
	certFile, chainFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", cert.Certificate[:1]...)
	writePEM(t, chainFile, "CERTIFICATE", cert.Certificate[1:]...)
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", der)

	addr := freeLoopbackAddr(t)
	// -www: answer HTTP requests and otherwise wait, as a web server does
	// (without it s_server echoes stdin and hangs up when stdin is empty).
	base := []string{"s_server", "-accept", addr, "-cert", certFile, "-key", keyFile, "-quiet", "-www"}
	if len(cert.Certificate) > 1 {
		base = append(base, "-cert_chain", chainFile)
	}
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl s_server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl s_server %v does not listen on %s: %v", args, addr, err)
		}
	}
}

// freeLoopbackAddr reserves a loopback port for a server started by
// address.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writePEM(t *testing.T, path, typ string, blocks ...[]byte) {
	t.Helper()
	var b []byte
	for _, der := range blocks {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// targetAt probes host at addr (an "ip:port").
func targetAt(t *testing.T, addr string) Target {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Target{Host: testlab.DefaultHost, SNI: testlab.DefaultHost, IP: host, Port: p, Timeout: 10 * time.Second}
}
