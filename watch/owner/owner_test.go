package owner

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// The owner's Manager keeps the watch.Service contract.
func TestConformanceOwner(t *testing.T) {
	watchtest.Conformance(t, func(t *testing.T) watch.Service {
		m := openManager(t, testConfig(dbPath(t), watchtest.Probe))
		if !m.IsOwner() {
			t.Fatal("not the owner")
		}
		return m
	})
}

// A follower keeps it too: every call crosses the socket and back, typed
// errors included, and the owner's Changes reach its subscribers.
func TestConformanceFollower(t *testing.T) {
	watchtest.Conformance(t, func(t *testing.T) watch.Service {
		db := dbPath(t)
		openManager(t, testConfig(db, watchtest.Probe))
		f := openManager(t, testConfig(db, watchtest.Probe))
		if f.Role() != "follower" {
			t.Fatalf("second Manager: role %q", f.Role())
		}
		return f
	})
}

// Every method of watch.Service but Subscribe has a forwarder that names
// it right, locally and across the socket.
func TestEveryMethodForwarded(t *testing.T) {
	db := dbPath(t)
	o := openManager(t, testConfig(db, watchtest.Probe))
	f := openManager(t, testConfig(db, watchtest.Probe))
	st := reflect.TypeFor[watch.Service]()
	for i := 0; i < st.NumMethod(); i++ {
		name := st.Method(i).Name
		if name == "Subscribe" {
			continue
		}
		for role, m := range map[string]*Manager{"owner": o, "follower": f} {
			fn := reflect.ValueOf(m).MethodByName(name)
			in := []reflect.Value{reflect.ValueOf(ctxT(t))}
			for j := 1; j < fn.Type().NumIn(); j++ {
				in = append(in, reflect.Zero(fn.Type().In(j)))
			}
			out := fn.Call(in)
			err, _ := out[len(out)-1].Interface().(error)
			var fe *probe.FieldError
			if err != nil && !errors.As(err, &fe) {
				t.Errorf("%s.%s with zero arguments: %v", role, name, err)
			}
		}
	}
	if _, err := method(o, "Subscribe"); err == nil {
		t.Error("Subscribe is callable remotely")
	}
}

// Two processes on one database: both answer, only the owner probes, and
// when the owner is SIGKILLed the other takes over at once and probes,
// without repeating an alert the dead owner committed.
func TestTwoProcessesHandover(t *testing.T) {
	db := dbPath(t)
	ctx := ctxT(t)
	owner := startChild(t, "owner", db)
	waitFor(t, 15*time.Second, "the child to own and add", func() bool { return len(owner.with("READY")) == 1 || len(owner.with("ERR")) > 0 })
	if r := owner.with("ROLE "); len(r) != 1 || r[0] != "owner" {
		t.Fatalf("child role %v, errors %v", r, owner.with("ERR "))
	}
	var mine atomic.Int64
	cfg := testConfig(db, func(ctx context.Context, tg probe.Target, o probe.Options) (probe.Report, error) {
		mine.Add(1)
		return watchtest.Probe(ctx, tg, o)
	})
	clock := watchtest.NewClock(time.Now())
	cfg.Engine.Clock, cfg.Engine.StartupSpread = clock, time.Second
	m := openManager(t, cfg)
	if m.Role() != "follower" {
		t.Fatalf("second process role %q, want follower", m.Role())
	}
	rec := &watchtest.Recorder{}
	m.Subscribe(rec)
	if l, err := m.List(ctx, "", 0); err != nil || len(l.Watches) != 1 || l.Watches[0].LastReport == nil {
		t.Fatalf("follower List: %+v, %v", l, err)
	}
	// A follower's Add is probed by the owner, and the owner's Change (the
	// new watch and its first stage alert together) reaches the follower.
	w2, err := m.Add(ctx, watch.Spec{Target: "soon.test", Schedule: "@every 1s"})
	if err != nil || w2.LastReport == nil || w2.LastReport.ExpiryStage != "7d" {
		t.Fatalf("follower Add: %+v, %v", w2, err)
	}
	if p := owner.with("PROBE "); len(p) != 2 || p[1] != "soon.test" {
		t.Errorf("the owner's probes: %v", p)
	}
	waitFor(t, 5*time.Second, "the owner's change at the follower", func() bool {
		return rec.Count(watch.EventStageCrossed, "") == 1 && rec.Count(watch.EventWatchAdded, "") == 1
	})
	if mine.Load() != 0 {
		t.Fatalf("the follower probed %d times", mine.Load())
	}
	owner.kill(t)
	killed := time.Now()
	waitFor(t, 10*time.Second, "takeover", m.IsOwner)
	t.Logf("takeover %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "the new owner probing", func() bool {
		clock.Advance(200 * time.Millisecond)
		return mine.Load() >= 2
	})
	if l, err := m.List(ctx, "", 0); err != nil || len(l.Watches) != 2 {
		t.Fatalf("List after takeover: %d, %v", len(l.Watches), err)
	}
	clock.Advance(time.Second)
	time.Sleep(20 * time.Millisecond)
	if n := rec.Count(watch.EventStageCrossed, ""); n != 1 {
		t.Errorf("stage alerts after handover: %d, want 1 (no repeats)", n)
	}
}

// In one process two Managers on one file behave like two processes (flock
// is per open file): calls racing the owner's Close are retried, not failed.
func TestHandoverRetriesCalls(t *testing.T) {
	db := dbPath(t)
	ctx := ctxT(t)
	a := openManager(t, testConfig(db, watchtest.Probe))
	b := openManager(t, testConfig(db, watchtest.Probe))
	if !a.IsOwner() || b.Role() != "follower" {
		t.Fatalf("roles %q %q", a.Role(), b.Role())
	}
	w, err := b.Add(ctx, watch.Spec{Target: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	var failures, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Get(ctx, w.ID); err != nil {
					failures.Add(1)
					t.Errorf("Get during handover: %v", err)
				}
				calls.Add(1)
			}
		})
	}
	waitFor(t, 5*time.Second, "calls before the handover", func() bool { return calls.Load() > 10 })
	a.Close()
	waitFor(t, 10*time.Second, "the follower to take over", b.IsOwner)
	before := calls.Load()
	waitFor(t, 5*time.Second, "calls after the handover", func() bool { return calls.Load() > before+10 })
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d calls failed", failures.Load(), calls.Load())
	}
}

// A child adding watches is SIGKILLed mid-way: every watch whose Add had
// returned is present afterwards and the file opens cleanly.
func TestCrashWhileAdding(t *testing.T) {
	db := dbPath(t)
	c := startChild(t, "adder", db)
	waitFor(t, 60*time.Second, "50 acknowledged adds", func() bool { return len(c.with("ACK ")) >= 50 || len(c.with("ERR")) > 0 })
	c.kill(t)
	if errs := c.with("ERR "); len(errs) > 0 {
		t.Fatalf("child errors: %v", errs)
	}
	acked := c.with("ACK ")
	s, err := store.Open(db, store.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	views, err := s.List()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, v := range views {
		present[v.Record.ID] = v.LastReport != nil
	}
	for _, id := range acked {
		if has, ok := present[id]; !ok || !has {
			t.Fatalf("acknowledged watch %s lost (present %v, with report %v)", id, ok, has)
		}
	}
	t.Logf("%d acknowledged, %d present after SIGKILL", len(acked), len(views))
	m := openManager(t, testConfig(db, watchtest.Probe))
	if l, err := m.List(ctxT(t), "", watch.MaxPageLimit); err != nil || len(l.Watches) < len(acked) {
		t.Fatalf("List after crash: %d, %v", len(l.Watches), err)
	}
}

// A database path too long for sun_path still gets a working socket.
func TestLongDBPathSocket(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 120 {
		dir += "/deeper-directory-level"
	}
	db := dir + "/tlswatch.db"
	if sp := socketPath(db); len(sp) >= 100 || sp != socketPath(db) {
		t.Fatalf("socket path %q (%d bytes)", sp, len(sp))
	}
	a := openManager(t, testConfig(db, watchtest.Probe))
	b := openManager(t, testConfig(db, watchtest.Probe))
	if !a.IsOwner() || b.Role() != "follower" {
		t.Fatalf("roles %q %q", a.Role(), b.Role())
	}
	if _, err := b.Add(ctxT(t), watch.Spec{Target: "x.test"}); err != nil {
		t.Fatal(err)
	}
	if l, err := a.List(ctxT(t), "", 0); err != nil || len(l.Watches) != 1 {
		t.Fatalf("List: %d %v", len(l.Watches), err)
	}
}

// fakeAlerter records its lifecycle and queues one entry per Change.
type fakeAlerter struct {
	mu        sync.Mutex
	attached  []watch.Outbox
	delivered atomic.Int64 // Deliver calls that returned
}

func (a *fakeAlerter) Attach(ob watch.Outbox) watch.CommitHook {
	a.mu.Lock()
	a.attached = append(a.attached, ob)
	a.mu.Unlock()
	return func(tx store.OutboxTx, c watch.Change) error {
		kinds := make([]string, len(c.Events))
		for i, e := range c.Events {
			kinds[i] = e.Kind
		}
		return tx.Enqueue(nil, store.OutboxEntry{Channel: "test", Payload: []byte(strings.Join(kinds, ","))})
	}
}

func (a *fakeAlerter) Deliver(ctx context.Context) {
	<-ctx.Done()
	a.delivered.Add(1)
}

// Alert delivery plugs into each ownership period: attached to the owned
// database's outbox before the engine commits anything, delivering until
// the ownership ends; a follower never attaches.
func TestAlertsFollowOwnership(t *testing.T) {
	db := dbPath(t)
	al := &fakeAlerter{}
	cfg := testConfig(db, watchtest.Probe)
	cfg.Alerts = al
	a := openManager(t, cfg)
	b := openManager(t, cfg)
	if _, err := b.Add(ctxT(t), watch.Spec{Target: "a.test"}); err != nil {
		t.Fatal(err)
	}
	al.mu.Lock()
	n := len(al.attached)
	ob := al.attached[0]
	al.mu.Unlock()
	if n != 1 {
		t.Fatalf("attached %d times with one owner", n)
	}
	due, err := ob.Due(time.Now(), 0)
	if err != nil || len(due) != 1 || string(due[0].Payload) != "watch_added,status_changed" {
		t.Fatalf("outbox after Add: %+v %v", due, err)
	}
	a.Close()
	waitFor(t, 10*time.Second, "takeover", b.IsOwner)
	al.mu.Lock()
	n = len(al.attached)
	al.mu.Unlock()
	if n != 2 || al.delivered.Load() != 1 {
		t.Errorf("after a handover: attached %d times, %d delivery periods over", n, al.delivered.Load())
	}
}
