package probe

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// helloOnlyServer is a raw listener that answers a ClientHello offering
// exactly version (legacy_version; SSL 3.0 to TLS 1.2) with a bare
// ServerHello choosing the first offered suite pick accepts, then hangs up;
// any other ClientHello gets a handshake_failure alert. It shows what no Go
// or OpenSSL server here still speaks (SSL 3.0, export suites): a scanner
// reads the choice from the ServerHello alone.
func helloOnlyServer(t *testing.T, version uint16, pick func(id uint16) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		acceptEach(ln, &wg, func(c net.Conn) { c.Write(serverHelloFor(c, version, pick)) })
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// serverHelloFor reads one ClientHello record from c and returns the
// record to answer it with.
func serverHelloFor(c net.Conn, version uint16, pick func(uint16) bool) []byte {
	alert := []byte{21, 3, 1, 0, 2, 2, 40} // fatal handshake_failure
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 22 {
		return alert
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c, body); err != nil || len(body) < 39 || body[0] != 1 {
		return alert
	}
	if uint16(body[4])<<8|uint16(body[5]) != version {
		return alert
	}
	rest := body[38:] // after type, length, version and random
	rest = rest[1+int(rest[0]):]
	n := int(rest[0])<<8 | int(rest[1])
	for i := 2; i+1 < 2+n && i+1 < len(rest); i += 2 {
		id := uint16(rest[i])<<8 | uint16(rest[i+1])
		if !pick(id) {
			continue
		}
		hello := []byte{2, 0, 0, 38, byte(version >> 8), byte(version)}
		hello = append(hello, make([]byte, 32)...)         // random
		hello = append(hello, 0, byte(id>>8), byte(id), 0) // no session id, the suite, no compression
		return append([]byte{22, byte(version >> 8), byte(version), 0, byte(len(hello))}, hello...)
	}
	return alert
}

// SSL 3.0 and export suites, which no server here speaks any more, seen
// the way a scanner sees them: in the ServerHello.
func TestCiphersFromServerHello(t *testing.T) {
	cases := []struct {
		name    string
		version uint16
		suite   uint16
		proto   string
		want    string
	}{
		{"ssl3", 0x0300, 0x000A, "SSL 3.0", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"},
		{"export", 0x0301, 0x0003, "TLS 1.0", "TLS_RSA_EXPORT_WITH_RC4_40_MD5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := helloOnlyServer(t, tc.version, func(id uint16) bool { return id == tc.suite })
			scan, profile, fs := scanOf(t, addr)
			if !protoAccepted(scan.protos, tc.proto) || cipherOf(scan.ciphers, tc.proto, tc.want) == nil {
				t.Fatalf("%s %s not found: %+v %+v", tc.proto, tc.want, scan.protos, scan.ciphers)
			}
			if profile != ProfileNone {
				t.Errorf("profile %q, want none", profile)
			}
			if f, ok := deprecatedFinding(scan.protos); !ok || !strings.Contains(f.Message, tc.proto) {
				t.Errorf("deprecated_protocol %+v", f)
			}
			if tc.name == "export" {
				wantWeakCipher(t, fs, SeverityWarning, "export-grade")
			}
		})
	}
}
