// Package foreignlab runs TLS servers that nobody on this project wrote —
// nginx, openssl s_server, gnutls-serv, stunnel and dovecot — on loopback
// ports chosen at run time, each configured per test in a temporary
// directory with certificates the test generated. tlswatch's diagnoses are
// checked against them, because a server built on Go's crypto/tls agrees
// with the probe's own TLS stack on everything that matters and so cannot
// show where the two differ.
//
// Every server is a child process in its own process group: Start waits
// until its port accepts connections (or fails the test with the server's
// log), and the test's cleanup stops the whole group and waits for it. A
// missing binary fails the test, naming the Debian package that .ci/run
// installs; it never skips.
package foreignlab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the process life cycle. Generous: CI runs the lab on two
// shared cores under the race detector.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 5 * time.Second
	// portAttempts bounds the restarts when another process took the free
	// port between our choice and the server's bind.
	portAttempts = 3
)

// Server is a running foreign server.
type Server struct {
	Stack string // "nginx", "openssl", "gnutls", "stunnel", "dovecot"
	Addr  string // 127.0.0.1:port
	Port  int
	Dir   string // its temporary directory: configuration, keys, logs

	cmd      *exec.Cmd
	exited   chan struct{} // closed once the process is reaped
	waitErr  error         // set before exited closes
	logFiles []string
}

// Logs returns the tail of the server's output and log files, for failure
// messages.
func (s *Server) Logs() string {
	var b strings.Builder
	for _, f := range s.logFiles {
		data, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		const max = 6 << 10
		if len(data) > max {
			data = append([]byte("..."), data[len(data)-max:]...)
		}
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", filepath.Base(f), s.Stack, bytes.TrimSpace(data))
	}
	return b.String()
}

// binary describes a server program and the Debian package that ships it.
type binary struct {
	stack   string
	path    string // absolute path as installed by the package
	pkg     string
	altPath []string
}

var (
	nginxBin   = binary{stack: "nginx", path: "/usr/sbin/nginx", pkg: "nginx-light"}
	opensslBin = binary{stack: "openssl", path: "/usr/bin/openssl", pkg: "openssl"}
	gnutlsBin  = binary{stack: "gnutls", path: "/usr/bin/gnutls-serv", pkg: "gnutls-bin"}
	stunnelBin = binary{stack: "stunnel", path: "/usr/bin/stunnel4", pkg: "stunnel4", altPath: []string{"/usr/bin/stunnel"}}
	dovecotBin = binary{stack: "dovecot", path: "/usr/sbin/dovecot", pkg: "dovecot-imapd"}
)

// lookup returns the program's path or fails the test with the package to
// install: the lab must never pass by skipping.
func (b binary) lookup(t testing.TB) string {
	t.Helper()
	for _, p := range append([]string{b.path}, b.altPath...) {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(filepath.Base(b.path)); err == nil {
		return p
	}
	t.Fatalf("foreignlab: %s not found (%s): install the Debian package %s "+
		"(.ci/run does: apt-get install -y nginx-light gnutls-bin stunnel4 dovecot-imapd)", b.stack, b.path, b.pkg)
	return ""
}

// launch describes one start of a server on a given port.
type launch struct {
	args     []string
	env      []string // added to the inherited environment
	logFiles []string // besides stdout/stderr, which always go to Dir/stdout.log
	// ready, when set, replaces the TCP connect check (a server that must
	// answer something before it counts as up).
	ready func(addr string) error
}

// start runs bin in dir, on a free loopback port, with the launch that
// configure builds for that port; it retries on a new port when the bind
// lost a race, and fails the test with the logs when the server does not
// come up within startTimeout.
func start(t testing.TB, bin binary, dir string, configure func(port int) (launch, error)) *Server {
	t.Helper()
	path := bin.lookup(t)
	var lastErr error
	var last *Server
	for attempt := 0; attempt < portAttempts; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("foreignlab: %v", err)
		}
		l, err := configure(port)
		if err != nil {
			t.Fatalf("foreignlab: configure %s: %v", bin.stack, err)
		}
		s, err := spawn(bin.stack, path, dir, port, l)
		if err != nil {
			t.Fatalf("foreignlab: start %s: %v", bin.stack, err)
		}
		last = s
		err = s.waitReady(l.ready)
		if err == nil {
			t.Cleanup(func() {
				if err := s.stop(); err != nil {
					t.Errorf("foreignlab: stop %s: %v\n%s", s.Stack, err, s.Logs())
				}
			})
			return s
		}
		lastErr = err
		s.stop()
		if !strings.Contains(s.Logs(), "in use") {
			break
		}
	}
	t.Fatalf("foreignlab: %s did not start: %v\n%s", bin.stack, lastErr, last.Logs())
	return nil
}

// spawn starts the process in its own process group, with stdout and
// stderr in a file (no copying goroutine to outlive the test).
func spawn(stack, path, dir string, port int, l launch) (*Server, error) {
	out, err := os.OpenFile(filepath.Join(dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(path, l.args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), l.env...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", path, strings.Join(l.args, " "), err)
	}
	s := &Server{
		Stack: stack, Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir,
		cmd: cmd, exited: make(chan struct{}),
		logFiles: append([]string{out.Name()}, l.logFiles...),
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// waitReady polls until the port accepts a connection (or ready says so),
// the process exits, or startTimeout passes.
func (s *Server) waitReady(ready func(addr string) error) error {
	deadline := time.Now().Add(startTimeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("exited before accepting connections: %v", s.waitErr)
		default:
		}
		if ready != nil {
			err = ready(s.Addr)
		} else {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
				c.Close()
			}
		}
		if err == nil {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("no connection accepted on %s within %s: %v", s.Addr, startTimeout, err)
}

// stop ends the whole process group: SIGTERM, then SIGKILL after
// stopTimeout, and waits until the process is reaped.
func (s *Server) stop() error {
	select {
	case <-s.exited:
		return nil // already gone (a failed start)
	default:
	}
	pgid := s.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGTERM process group %d: %w", pgid, err)
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.exited
	}
	// Children that outlive the leader (dovecot's) are killed too, and
	// waited for until the group is gone.
	deadline := time.Now().Add(stopTimeout)
	for syscall.Kill(-pgid, syscall.SIGKILL) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d still alive %s after SIGKILL", pgid, stopTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// FreePort returns a loopback TCP port that was free a moment ago: a
// listener is opened on port 0 and closed. Servers that lose the race are
// restarted on another port by start.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("reserve a loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newDir makes the server's temporary directory, readable by the
// unprivileged users that some servers switch to (dovecot's login
// processes), unlike t.TempDir's 0700.
func newDir(t testing.TB, stack string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tlswatch-foreignlab-"+stack+"-")
	if err != nil {
		t.Fatalf("foreignlab: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("foreignlab: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
