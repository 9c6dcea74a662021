package watch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"go.uber.org/goleak"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	// Every Manager a test opened must have stopped its scheduler,
	// workers, socket server and followers' streams.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testLogger logs to stderr when TLSWATCH_TEST_LOG is set, else nowhere.
func testLogger() *slog.Logger {
	if os.Getenv("TLSWATCH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// labServer is a loopback TLS server whose certificate can be rotated and
// which can be made to fail every handshake (a TLS outage).
type labServer struct {
	Addr string
	Port int
	cur  atomic.Pointer[tls.Certificate]
	down atomic.Bool
}

var errOutage = errors.New("outage")

func serveLab(t testing.TB, cert tls.Certificate) *labServer {
	s := &labServer{}
	s.cur.Store(&cert)
	s.Addr = testlab.ServeTLS(t, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if s.down.Load() {
			return nil, errOutage
		}
		return s.cur.Load(), nil
	}})
	_, p, _ := net.SplitHostPort(s.Addr)
	s.Port, _ = strconv.Atoi(p)
	return s
}

func (s *labServer) rotate(c tls.Certificate) { s.cur.Store(&c) }

// target addresses the lab server by the lab's host name, dialled at 127.0.0.1.
func (s *labServer) target(timeout time.Duration) probe.Target {
	return probe.Target{Host: testlab.DefaultHost, Port: s.Port, IP: "127.0.0.1", Timeout: timeout}
}

// realProbe is the real engine with the lab's trust store and without the
// checks that would leave loopback (AIA, OCSP) or cost extra handshakes.
func realProbe(roots *testlab.PKI, count *atomic.Int64) ProbeFunc {
	pool := roots.Roots()
	return func(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
		if count != nil {
			count.Add(1)
		}
		o.Roots = pool
		o.NoAIA, o.NoLegacyProtocols, o.NoRevocation, o.SingleAddress = true, true, true, true
		return probe.Run(ctx, t, o)
	}
}

func leafIn(p *testlab.PKI, d time.Duration) tls.Certificate {
	return p.Leaf(testlab.LeafOpts{NotAfter: p.Now.Add(d)})
}

// recorder is a Notifier that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	events []Event
	lists  int
}

func (r *recorder) WatchChanged(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) ListChanged() {
	r.mu.Lock()
	r.lists++
	r.mu.Unlock()
}

func (r *recorder) count(kind, detail string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind && (detail == "" || containsStr(e.Message, detail)) {
			n++
		}
	}
	return n
}

func (r *recorder) listChanges() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lists
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ""
	for _, e := range r.events {
		s += fmt.Sprintf("\n  %s/%s %s", e.Kind, e.Level, e.Message)
	}
	return s
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testConfig(dbPath string, p ProbeFunc) Config {
	return Config{
		DBPath:        dbPath,
		Probe:         p,
		Logger:        testLogger(),
		FlushInterval: 50 * time.Millisecond,
		RetryInterval: 100 * time.Millisecond,
		LockTimeout:   50 * time.Millisecond,
	}
}

func openManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "tlswatch.db") }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
