package foreignlab

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// TestMain: the lab's helper goroutines (process reapers, the stunnel
// backend) must end with the test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// dialTLS makes a verified TLS 1.2+ connection to addr as a standard
// client would, after up (the STARTTLS dialogue; nil for direct TLS).
func dialTLS(t *testing.T, p *testlab.PKI, addr string, up func(net.Conn) error) tls.ConnectionState {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if up != nil {
		if err := up(c); err != nil {
			t.Fatalf("starttls: %v", err)
		}
	}
	tc := tls.Client(c, &tls.Config{ServerName: testlab.DefaultHost, RootCAs: p.Roots(), NextProtos: []string{"h2", "http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	return tc.ConnectionState()
}

// imapStartTLS is the IMAP upgrade dialogue, done by hand so that this
// test does not lean on the probe it serves.
func imapStartTLS(c net.Conn) error {
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
		return &net.OpError{Op: "greeting", Err: err}
	}
	if _, err := c.Write([]byte("a STARTTLS\r\n")); err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "a OK") {
			return nil
		}
		if strings.HasPrefix(line, "a ") {
			return &net.OpError{Op: "starttls", Err: os.ErrInvalid}
		}
	}
}

// TestStacksServe: every stack starts on a run-time port, serves the
// generated chain to a standard client, and stops with its whole process
// group at cleanup.
func TestStacksServe(t *testing.T) {
	p := testlab.NewPKI(t)
	cfg := TLS{Cert: p.Leaf(testlab.LeafOpts{})}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *Server
		up    func(net.Conn) error
		alpn  string
	}{
		{"nginx", func(t *testing.T) *Server { return StartNginx(t, Nginx{TLS: cfg, HTTP2: true}) }, nil, "h2"},
		{"openssl", func(t *testing.T) *Server {
			c := cfg
			c.ALPN = []string{"h2", "http/1.1"}
			return StartOpenSSL(t, c)
		}, nil, "h2"},
		{"gnutls", func(t *testing.T) *Server { return StartGnuTLS(t, cfg) }, nil, ""},
		{"stunnel", func(t *testing.T) *Server { return StartStunnel(t, cfg) }, nil, ""},
		{"dovecot", func(t *testing.T) *Server { return StartDovecot(t, cfg) }, imapStartTLS, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var pgid int
			t.Run("serve", func(t *testing.T) {
				s := tc.start(t)
				pgid = s.cmd.Process.Pid
				cs := dialTLS(t, p, s.Addr, tc.up)
				if len(cs.PeerCertificates) != 2 || !cs.PeerCertificates[1].Equal(p.Intermediate.Cert) {
					t.Errorf("served %d certificates, want the leaf and the intermediate\n%s", len(cs.PeerCertificates), s.Logs())
				}
				if cs.NegotiatedProtocol != tc.alpn {
					t.Errorf("ALPN %q, want %q", cs.NegotiatedProtocol, tc.alpn)
				}
			})
			if err := syscall.Kill(-pgid, 0); err == nil {
				t.Errorf("process group %d still alive after cleanup", pgid)
			}
		})
	}
}

// TestMissingBinaryFails: a stack that is not installed fails the test
// with the package to install, never skips.
func TestMissingBinaryFails(t *testing.T) {
	b := binary{stack: "nosuch", path: filepath.Join(t.TempDir(), "nosuch-server"), pkg: "nosuch-pkg"}
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.lookup(ft)
	}()
	<-done
	if !strings.Contains(ft.msg, "install the Debian package nosuch-pkg") || !strings.Contains(ft.msg, ".ci/run") {
		t.Errorf("message %q does not name the package and .ci/run", ft.msg)
	}
}

// fatalRecorder captures Fatalf (which ends the goroutine, as in a test).
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = strings.TrimSpace(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// TestDHGroup1024: the generated parameters are what OpenSSL reads as a
// 1024-bit safe-prime group.
func TestDHGroup1024(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dh.pem")
	if err := os.WriteFile(path, DHGroup1024(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(opensslBin.lookup(t), "dhparam", "-in", path, "-check", "-text", "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "(1024 bit)") || !strings.Contains(string(out), "DH parameters appear to be ok") {
		t.Errorf("openssl dhparam -check: %v\n%s", err, out)
	}
}

// TestDHE1024Served: the DHE case really serves the 1024-bit group, as
// OpenSSL's own client sees it (not tlswatch, whose verdict is on trial).
func TestDHE1024Served(t *testing.T) {
	p := testlab.NewPKI(t)
	s := StartOpenSSL(t, TLS{Cert: p.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048}), Versions: []uint16{tls.VersionTLS12},
		DHParams: DHGroup1024(), Ciphers: "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=1"})
	cmd := exec.Command(opensslBin.lookup(t), "s_client", "-connect", s.Addr, "-tls1_2",
		"-cipher", "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0")
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "Server Temp Key: DH, 1024 bits") {
		t.Errorf("s_client does not see a 1024-bit DH group:\n%s\n%s", out, s.Logs())
	}
}
