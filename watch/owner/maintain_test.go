package owner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// logCapture is a slog.Handler that keeps the messages.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *logCapture) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// The owner prunes history past the retention it was given (serve
// --retention), in the background, as soon as it owns the file.
func TestOwnerPrunesHistory(t *testing.T) {
	path := dbPath(t)
	now := time.Now()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := store.Record{ID: "w_1", Target: probe.TargetInfo{Host: "a.test", Port: 443}, Schedule: "@every 1h",
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: now.Add(-48 * time.Hour), State: "up",
		LastCheckedAt: now.Add(-time.Minute), LastStatus: "ok"}
	ups := []store.Update{{Record: rec, Create: true}}
	for h := 48; h >= 1; h-- {
		at := now.Add(-time.Duration(h)*time.Hour + time.Minute)
		ups = append(ups, store.Update{Record: rec, Report: &probe.Report{CheckedAt: at, Status: "ok", ExpiryStage: "none", Findings: []probe.Finding{}}})
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	db.Close()

	logs := &logCapture{}
	cfg := testConfig(path, watchtest.Probe)
	cfg.Engine.Logger = slog.New(logs)
	cfg.Store.Retention = store.Retention{Raw: 24 * time.Hour}
	cfg.PruneEvery = 100 * time.Millisecond
	m := openManager(t, cfg)
	waitFor(t, 10*time.Second, "the owner's first prune", func() bool { return logs.has("pruned history past its retention") })
	m.Close()

	db, err = store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Samples < 24 || u.Samples > 26 || u.OldestSample.Before(now.Add(-24*time.Hour)) {
		t.Errorf("after the owner pruned: %d samples from %v; want the last day's 24 (and any probe since)", u.Samples, u.OldestSample)
	}
}

// db compact while another process owns the file: the call goes to the
// owner, which swaps the file under its own lock; the follower goes on, and
// when the owner dies it takes over the compacted file with every watch.
func TestCompactThroughTheOwner(t *testing.T) {
	db := dbPath(t)
	ctx := ctxT(t)
	owner := startChild(t, "owner", db)
	waitFor(t, 15*time.Second, "the child to own and add", func() bool { return len(owner.with("READY")) == 1 || len(owner.with("ERR")) > 0 })
	m := openManager(t, testConfig(db, watchtest.Probe))
	if m.Role() != "follower" {
		t.Fatalf("role %q, want follower", m.Role())
	}
	for i := range 20 {
		if _, err := m.Add(ctx, watch.Spec{Target: fmt.Sprintf("h%d.test", i), Schedule: "@every 1h"}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(db)
	res, err := m.CompactDatabase(ctx)
	if err != nil || res.After <= 0 {
		t.Fatalf("compact through the owner: %+v, %v", res, err)
	}
	if after, _ := os.Stat(db); os.SameFile(before, after) {
		t.Error("the path still names the old file")
	}
	if u, err := m.DatabaseUsage(ctx); err != nil || u.Watches != 21 || u.Samples != 21 {
		t.Errorf("usage from the owner after compaction: %+v, %v", u, err)
	}
	if _, err := m.Add(ctx, watch.Spec{Target: "late.test", Schedule: "@every 1h"}); err != nil {
		t.Fatalf("add after compaction: %v", err)
	}
	owner.kill(t)
	waitFor(t, 10*time.Second, "takeover", m.IsOwner)
	if p, err := m.List(ctx, "", 0); err != nil || len(p.Watches) != 22 {
		t.Fatalf("after takeover of the compacted file: %d watches, %v", len(p.Watches), err)
	}
}
