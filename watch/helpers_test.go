package watch_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

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
	Port int
	cur  atomic.Pointer[tls.Certificate]
	down atomic.Bool
}

var errOutage = errors.New("outage")

func serveLab(t testing.TB, cert tls.Certificate) *labServer {
	s := &labServer{}
	s.cur.Store(&cert)
	addr := testlab.ServeTLS(t, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if s.down.Load() {
			return nil, errOutage
		}
		return s.cur.Load(), nil
	}})
	_, p, _ := net.SplitHostPort(addr)
	s.Port, _ = strconv.Atoi(p)
	return s
}

func (s *labServer) rotate(c tls.Certificate) { s.cur.Store(&c) }

// spec addresses the lab server by the lab's host name, dialled at 127.0.0.1.
func (s *labServer) spec(schedule string) watch.Spec {
	return watch.Spec{Target: testlab.DefaultHost + ":" + strconv.Itoa(s.Port), IP: "127.0.0.1", TimeoutMS: 5000, Schedule: schedule}
}

func leafIn(p *testlab.PKI, d time.Duration) tls.Certificate {
	return p.Leaf(testlab.LeafOpts{NotAfter: p.Now.Add(d)})
}

// labProber is the real engine with the lab's trust store and without the
// checks that would leave loopback (AIA, OCSP) or cost extra handshakes;
// count (if set) counts probes.
func labProber(p *testlab.PKI, count *atomic.Int64) *watch.Prober {
	return &watch.Prober{
		Base: probe.Options{Roots: p.Roots(), NoAIA: true, NoLegacyProtocols: true, NoRevocation: true, SingleAddress: true},
		Probe: func(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
			if count != nil {
				count.Add(1)
			}
			return probe.Run(ctx, t, o)
		},
	}
}

// env is one engine on a bbolt file in t.TempDir(), on a fake clock.
type env struct {
	t     *testing.T
	path  string
	cfg   watch.Config
	clock *watchtest.Clock
	db    *store.DB
	eng   *watch.Engine
	rec   *watchtest.Recorder
}

// newEnv starts an engine; cfg.Clock defaults to a fake clock at start.
func newEnv(t *testing.T, cfg watch.Config, start time.Time) *env {
	e := &env{t: t, path: filepath.Join(t.TempDir(), "tlswatch.db"), cfg: cfg, clock: watchtest.NewClock(start)}
	if e.cfg.Clock == nil {
		e.cfg.Clock = e.clock
	}
	if e.cfg.Logger == nil {
		e.cfg.Logger = testLogger()
	}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := store.Open(e.path, store.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	eng, err := watch.NewEngine(db, e.cfg)
	if err != nil {
		db.Close()
		e.t.Fatal(err)
	}
	e.db, e.eng, e.rec = db, eng, &watchtest.Recorder{}
	eng.Subscribe(e.rec)
}

func (e *env) close() {
	if e.eng != nil {
		e.eng.Close()
		e.db.Close()
		e.eng, e.db = nil, nil
	}
}

// restart closes the engine and the file and opens both again.
func (e *env) restart() {
	e.close()
	e.open()
}

// settle advances the fake clock in steps until cond holds, failing after
// a generous real-time deadline.
func (e *env) settle(step time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		e.clock.Advance(step)
		time.Sleep(2 * time.Millisecond)
	}
}

func (e *env) get(id string) watch.Watch {
	e.t.Helper()
	w, err := e.eng.Get(ctxT(e.t), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ptr(n int) *int { return &n }
