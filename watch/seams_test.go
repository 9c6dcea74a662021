package watch_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// switchOwnership owns every watch or none.
type switchOwnership struct{ owns atomic.Bool }

func (s *switchOwnership) Owns(string) bool { return s.owns.Load() }

// The scheduler asks the Ownership at every fire: a watch it does not own
// is not probed, and once it owns it again the record (which another node
// may have written meanwhile) is re-read before the probe.
func TestOwnershipFilter(t *testing.T) {
	f := &gatedProbe{}
	own := &switchOwnership{}
	own.owns.Store(true)
	e := newEnv(t, watch.Config{Prober: &watch.Prober{Probe: f.probe}, Ownership: own, Node: "node-1"}, time.Now())
	w, err := e.eng.Add(ctxT(t), watch.Spec{Target: "a.test", Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	if w.ProbedBy != "node-1" {
		t.Errorf("probed_by %q", w.ProbedBy)
	}
	own.owns.Store(false)
	base := f.calls.Load()
	for i := 0; i < 50; i++ {
		e.clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	if n := f.calls.Load() - base; n != 0 {
		t.Fatalf("%d probes of a watch another node owns", n)
	}
	// Another node writes the watch meanwhile (it counts failures).
	v, err := e.db.Get(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	v.Record.ConsecutiveFailures, v.Record.State, v.Record.ProbedBy = 2, watch.StateUp, "node-2"
	if _, err := e.db.Apply([]store.Update{{Record: v.Record}}); err != nil {
		t.Fatal(err)
	}
	if g := e.get(w.ID); g.ProbedBy != "node-2" {
		t.Fatalf("the other node's write: %+v", g)
	}
	own.owns.Store(true)
	e.settle(100*time.Millisecond, "a probe once owned again", func() bool {
		g := e.get(w.ID)
		return f.calls.Load() > base && g.ProbedBy == "node-1"
	})
	// The success reset what the other node counted: the record was re-read.
	if g := e.get(w.ID); g.ConsecutiveFailures != 0 {
		t.Errorf("failures %d after a success", g.ConsecutiveFailures)
	}
}

// remoteStore is a Store that other nodes write too: it hands the engine
// their Changes.
type remoteStore struct {
	*store.DB
	mu sync.Mutex
	fn func(watch.Change)
}

func (r *remoteStore) SubscribeRemote(fn func(watch.Change)) func() {
	r.mu.Lock()
	r.fn = fn
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.fn = nil
		r.mu.Unlock()
	}
}

func (r *remoteStore) deliver(c watch.Change) {
	r.mu.Lock()
	fn := r.fn
	r.mu.Unlock()
	fn(c)
}

// Changes another node committed reach this engine's subscribers, and a
// watch it added is scheduled here too; one it removed is dropped.
func TestRemoteChanges(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(dir+"/tlswatch.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs := &remoteStore{DB: db}
	clock := watchtest.NewClock(time.Now())
	f := &gatedProbe{}
	eng, err := watch.NewEngine(rs, watch.Config{Prober: &watch.Prober{Probe: f.probe}, Clock: clock, StartupSpread: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	rec := &watchtest.Recorder{}
	eng.Subscribe(rec)

	r := store.Record{ID: "w_remote", Target: probe.TargetInfo{Host: "a.test", Port: 443}, Schedule: "@every 1s",
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, State: watch.StatePending, CreatedAt: clock.Now()}
	if _, err := db.Apply([]store.Update{{Record: r, Create: true}}); err != nil {
		t.Fatal(err)
	}
	rs.deliver(watch.Change{Watch: watch.Watch{ID: r.ID}, Events: []watch.Event{{Kind: watch.EventWatchAdded}}})
	deadline := time.Now().Add(10 * time.Second)
	for f.calls.Load() == 0 || rec.Count(watch.EventWatchAdded, "") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a watch added by another node: %d probes, events %+v", f.calls.Load(), rec.Events())
		}
		clock.Advance(100 * time.Millisecond)
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := db.Delete(r.ID); err != nil {
		t.Fatal(err)
	}
	rs.deliver(watch.Change{Watch: watch.Watch{ID: r.ID}, Events: []watch.Event{{Kind: watch.EventWatchRemoved}}})
	time.Sleep(10 * time.Millisecond)
	base := f.calls.Load()
	for i := 0; i < 30; i++ {
		clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	if n := f.calls.Load() - base; n > 1 {
		t.Errorf("%d probes of a watch another node removed", n)
	}
}
