package watch_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func cannedEnv(t *testing.T, cfg watch.Config) *env {
	cfg.Prober = &watch.Prober{Probe: watchtest.Probe}
	return newEnv(t, cfg, t0)
}

func fieldOf(err error) string {
	var fe *probe.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// The total cap refuses a new watch, naming it, but never an update of a
// watch that exists; removing one makes room.
func TestMaxWatches(t *testing.T) {
	e := cannedEnv(t, watch.Config{NoScheduler: true, MaxWatches: 2})
	ctx := ctxT(t)
	a, err := e.eng.Add(ctx, watch.Spec{Target: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Add(ctx, watch.Spec{Target: "b.test"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.eng.Add(ctx, watch.Spec{Target: "c.test"})
	if fieldOf(err) != "max_watches" || !strings.Contains(err.Error(), "2 watches") {
		t.Fatalf("third watch: %v, want a max_watches error", err)
	}
	if _, err := e.eng.Add(ctx, watch.Spec{Target: "a.test", Schedule: "@every 1h"}); err != nil {
		t.Errorf("update at the cap: %v", err)
	}
	if _, err := e.eng.Remove(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Add(ctx, watch.Spec{Target: "c.test"}); err != nil {
		t.Errorf("after a removal: %v", err)
	}
}

// The cap per subject: an OAuth subject's watches count across sessions
// and restarts; a session's count for that session; others are not held
// back; the command line (neither) meets only the total.
func TestMaxWatchesPerSubject(t *testing.T) {
	e := cannedEnv(t, watch.Config{NoScheduler: true, MaxWatches: 100, MaxWatchesPerSubject: 2})
	ctx := ctxT(t)
	add := func(target, by, session string) error {
		_, err := e.eng.Add(ctx, watch.Spec{Target: target, CreatedBy: by, Session: session})
		return err
	}
	for _, c := range []struct {
		target, by, session, field string
	}{
		{"a1.test", "alice", "s1", ""},
		{"a2.test", "alice", "s2", ""},
		{"a3.test", "alice", "s3", "max_watches_per_subject"},
		{"b1.test", "bob", "s1", ""},
		{"x1.test", "", "s1", ""},
		{"x2.test", "", "s1", ""},
		{"x3.test", "", "s1", "max_watches_per_subject"},
		{"y1.test", "", "s2", ""},
		{"c1.test", "", "", ""},
		{"c2.test", "", "", ""},
		{"c3.test", "", "", ""},
		{"a1.test", "", "s1", ""}, // an update, whoever asks
	} {
		if err := add(c.target, c.by, c.session); fieldOf(err) != c.field || (c.field == "" && err != nil) {
			t.Errorf("Add %s by %q in %q: %v, want field %q", c.target, c.by, c.session, err, c.field)
		}
	}
	e.restart()
	if err := add("a3.test", "alice", "s9"); fieldOf(err) != "max_watches_per_subject" || !strings.Contains(err.Error(), `"alice"`) {
		t.Errorf("alice after a restart: %v", err)
	}
	if err := add("x3.test", "", "s1"); err != nil {
		t.Errorf("a session's count does not outlive the engine: %v", err)
	}
}

// Adds racing for the last place: exactly the cap is admitted.
func TestMaxWatchesConcurrent(t *testing.T) {
	e := cannedEnv(t, watch.Config{NoScheduler: true, MaxWatches: 5})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.eng.Add(ctxT(t), watch.Spec{Target: string(rune('a'+i)) + ".test"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch fieldOf(err) {
		case "":
			if err != nil {
				t.Error(err)
			}
			ok++
		case "max_watches":
		default:
			t.Error(err)
		}
	}
	if p, _ := e.eng.List(ctxT(t), "", 0); ok != 5 || len(p.Watches) != 5 {
		t.Errorf("%d admitted, %d stored; want 5", ok, len(p.Watches))
	}
}

// A record made undecodable on disk is set aside at load and logged with
// its id; every other watch loads and is probed on schedule.
func TestLoadQuarantinesABadRecord(t *testing.T) {
	var logs syncBuf
	probes := map[string]int{}
	var mu sync.Mutex
	cfg := watch.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Prober: &watch.Prober{Probe: func(ctx context.Context, tg probe.Target, o probe.Options) (probe.Report, error) {
			mu.Lock()
			probes[tg.Host]++
			mu.Unlock()
			return watchtest.Probe(ctx, tg, o)
		}}}
	e := newEnv(t, cfg, t0)
	var bad string
	for _, h := range []string{"a.test", "b.test", "c.test"} {
		w, err := e.eng.Add(ctxT(t), watch.Spec{Target: h, Schedule: "@every 1m"})
		if err != nil {
			t.Fatal(err)
		}
		if h == "b.test" {
			bad = w.ID
		}
	}
	e.close()
	raw, err := bolt.Open(e.path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("watches")).Put([]byte(bad), []byte{1, 0x7f}) }); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	e.open()
	if !strings.Contains(logs.String(), "id="+bad) {
		t.Errorf("the load did not log the bad record's id:\n%s", logs.String())
	}
	if p, err := e.eng.List(ctxT(t), "", 0); err != nil || len(p.Watches) != 2 {
		t.Fatalf("list after the quarantine: %+v %v", p, err)
	}
	mu.Lock()
	clear(probes)
	mu.Unlock()
	e.settle(10*time.Second, "probes of the other watches", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return probes["a.test"] >= 2 && probes["c.test"] >= 2
	})
	if q, err := e.db.Quarantine(); err != nil || len(q) != 1 || q[0].ID != bad {
		t.Errorf("quarantine: %+v %v", q, err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
