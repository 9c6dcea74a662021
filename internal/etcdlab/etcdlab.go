// Package etcdlab runs real etcd servers on loopback for tests: the embedded
// server (go.etcd.io/etcd/server/v3/embed) in the test process, or Debian's
// etcd binary as a child process, plus a TCP proxy that can cut a client off
// (a partition) without touching the server. Only tests import it, so the
// etcd server code never reaches the tlswatch binary.
package etcdlab

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// BinaryPath is where Debian's etcd-server package installs the server.
const BinaryPath = "/usr/bin/etcd"

// startTimeout bounds how long a server may take to become ready; generous
// because the machine is shared.
const startTimeout = 60 * time.Second

// Server is one single-member etcd on 127.0.0.1 with its data in a test's
// temporary directory. Stop and Start may be called repeatedly (an etcd
// outage and its return); the client port stays the same across them.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	dir      string
	client   int
	peer     int
	binary   string // empty: embedded
	embedded *embed.Etcd
	cmd      *exec.Cmd
	exited   chan struct{}
	fatalf   func(format string, args ...any)
	tls      *TLSFiles
}

// TLSFiles are the PEM files of a server that speaks TLS to its clients and
// requires their certificates (etcd's --cert-file, --key-file,
// --trusted-ca-file, --client-cert-auth). Client is what the lab's own
// client presents.
type TLSFiles struct {
	CA, Cert, Key         string
	ClientCert, ClientKey string
}

// Start runs an embedded etcd (server v3.7) in the test process. It stops
// at t's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "")
}

// StartBinary runs Debian's etcd-server binary (3.4 on bookworm) as a child
// process. The test fails, not skips, when the binary is missing: CI
// installs it.
func StartBinary(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(BinaryPath); err != nil {
		t.Fatalf("etcdlab: %s missing (apt-get install etcd-server): %v", BinaryPath, err)
	}
	return start(t, BinaryPath)
}

// StartTLS runs an embedded etcd that serves its clients over TLS only and
// requires client certificates.
func StartTLS(t testing.TB, files TLSFiles) *Server {
	t.Helper()
	return startWith(t, "", &files)
}

func start(t testing.TB, binary string) *Server {
	t.Helper()
	return startWith(t, binary, nil)
}

func startWith(t testing.TB, binary string, files *TLSFiles) *Server {
	t.Helper()
	s := &Server{dir: filepath.Join(t.TempDir(), "etcd"), binary: binary, fatalf: t.Fatalf,
		client: freePort(t.Fatalf), peer: freePort(t.Fatalf), tls: files}
	cu, _ := s.urls()
	s.Endpoint = cu.String()
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

var shared struct {
	once sync.Once
	s    *Server
	dir  string
}

// Shared is one embedded etcd for all the tests of a package that only need
// a server, each under its own Prefix; starting one per test would cost a
// second each. Tests must not Stop it. StopShared, in TestMain, ends it.
func Shared() *Server {
	shared.once.Do(func() {
		panicf := func(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
		dir, err := os.MkdirTemp("", "etcdlab-")
		if err != nil {
			panicf("etcdlab: %v", err)
		}
		shared.dir = dir
		shared.s = &Server{dir: filepath.Join(dir, "etcd"), fatalf: panicf,
			client: freePort(panicf), peer: freePort(panicf)}
		shared.s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(shared.s.client)
		shared.s.Start()
	})
	return shared.s
}

// StopShared stops the Shared server, if one was started.
func StopShared() {
	if shared.s != nil {
		shared.s.Stop()
		os.RemoveAll(shared.dir)
	}
}

// freePort asks the kernel for a loopback port that is free now. etcd needs
// the number in its configuration before it listens, and the same number
// again after a restart.
func freePort(fatalf func(string, ...any)) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("etcdlab: listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start starts the server (again) on its data directory and waits until it
// answers.
func (s *Server) Start() {
	if s.binary != "" {
		s.startBinary()
	} else {
		s.startEmbedded()
	}
	s.waitReady()
}

func (s *Server) urls() (client, peer url.URL) {
	client = url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(s.client)}
	if s.tls != nil {
		client.Scheme = "https"
	}
	peer = url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(s.peer)}
	return client, peer
}

func (s *Server) startEmbedded() {
	cfg := embed.NewConfig()
	cfg.Name = "lab"
	cfg.Dir = s.dir
	cu, pu := s.urls()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Tests fsync nothing they need after the process: the data dir is
	// thrown away, and fsync on a shared disk makes every Txn slow.
	cfg.UnsafeNoFsync = true
	if s.tls != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: s.tls.Cert, KeyFile: s.tls.Key,
			TrustedCAFile: s.tls.CA, ClientCertAuth: true}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.fatalf("etcdlab: start embedded etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(startTimeout):
		e.Close()
		s.fatalf("etcdlab: embedded etcd not ready after %s", startTimeout)
	}
	s.embedded = e
}

func (s *Server) startBinary() {
	cu, pu := s.urls()
	cmd := exec.Command(s.binary,
		"--name", "lab", "--data-dir", s.dir,
		"--listen-client-urls", cu.String(), "--advertise-client-urls", cu.String(),
		"--listen-peer-urls", pu.String(), "--initial-advertise-peer-urls", pu.String(),
		"--initial-cluster", "lab="+pu.String(),
		"--logger", "zap", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		s.fatalf("etcdlab: start %s: %v", s.binary, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(s.exited)
}

// waitReady polls until a Get answers: the binary gives no ready signal,
// and the embedded server's ReadyNotify precedes its client listener.
func (s *Server) waitReady() {
	cli := s.newClient()
	defer cli.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Get(ctx, "etcdlab-ready")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.fatalf("etcdlab: etcd at %s not answering after %s: %v", s.Endpoint, startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server; its data stays for the next Start. Safe to call
// when already stopped.
func (s *Server) Stop() {
	if s.embedded != nil {
		s.embedded.Close()
		s.embedded = nil
	}
	if s.cmd != nil {
		s.cmd.Process.Kill()
		<-s.exited
		s.cmd = nil
	}
}

func (s *Server) newClient() *clientv3.Client {
	var tlsCfg *tls.Config
	if s.tls != nil {
		info := transport.TLSInfo{CertFile: s.tls.ClientCert, KeyFile: s.tls.ClientKey, TrustedCAFile: s.tls.CA}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			s.fatalf("etcdlab: client TLS: %v", err)
		}
	}
	cli, err := newClient(s.Endpoint, tlsCfg)
	if err != nil {
		s.fatalf("etcdlab: %v", err)
	}
	return cli
}

func newClient(endpoint string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		TLS:         tlsCfg,
	})
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", endpoint, err)
	}
	return cli, nil
}

// Client returns a client of the server, closed at t's cleanup.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli := s.newClient()
	t.Cleanup(func() { cli.Close() })
	return cli
}

// NewClient returns a client of endpoint (a server's or a proxy's), closed
// at t's cleanup.
func NewClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := newClient(endpoint, nil)
	if err != nil {
		t.Fatalf("etcdlab: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var prefixes atomic.Int64

// Prefix returns a key prefix of its own for one test, so that tests sharing
// a server never see each other's keys.
func Prefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/t%d-%s/", prefixes.Add(1), name)
}

// Logger sends a node's log to the test's log, so that a failure shows what
// the nodes did.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
