package watch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// fakeProbe answers without the network; behaviour per host.
type fakeProbe struct {
	mu       sync.Mutex
	inFlight map[string]int
	maxPer   int // most concurrent runs of one target seen
	cur, max int // concurrent runs overall
	calls    atomic.Int64
	delay    time.Duration
	panicOn  string
}

func (f *fakeProbe) probe(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
	f.calls.Add(1)
	f.mu.Lock()
	if f.inFlight == nil {
		f.inFlight = map[string]int{}
	}
	f.inFlight[t.Host]++
	f.cur++
	f.maxPer = max(f.maxPer, f.inFlight[t.Host])
	f.max = max(f.max, f.cur)
	delay, panicOn := f.delay, f.panicOn
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight[t.Host]--
		f.cur--
		f.mu.Unlock()
	}()
	if t.Host == panicOn {
		panic("boom")
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
	}
	na := o.Now.Add(200 * 24 * time.Hour)
	return probe.Report{Target: probe.TargetInfo{Host: t.Host, Port: t.Port}, CheckedAt: o.Now, Status: probe.StatusOK,
		Reachable: true, Trusted: true, ExpiryStage: "none", Findings: []probe.Finding{},
		Leaf: &probe.CertInfo{SHA256: "fp-" + t.Host, NotAfter: na, DaysRemaining: 200}}, nil
}

// Bounded concurrency, skip-not-stack, panics recovered, clean stop.
func TestSchedulerBoundsAndRecovers(t *testing.T) {
	f := &fakeProbe{}
	cfg := testConfig(dbPath(t), f.probe)
	cfg.Concurrency = 2
	m := openManager(t, cfg)
	ctx := ctxT(t)
	for i := 0; i < 6; i++ {
		if _, err := m.Add(ctx, Spec{Target: probe.Target{Host: fmt.Sprintf("h%d.test", i)}, Schedule: "@every 1s"}); err != nil {
			t.Fatal(err)
		}
	}
	// Slow probes from now on: each run takes 2.5 s on a 1 s schedule.
	f.mu.Lock()
	f.delay = 2500 * time.Millisecond
	f.maxPer, f.max = 0, 0
	f.mu.Unlock()
	base := f.calls.Load()
	waitFor(t, 20*time.Second, "slow scheduled runs", func() bool { return f.calls.Load() >= base+6 })
	f.mu.Lock()
	maxAll, maxPer := f.max, f.maxPer
	f.mu.Unlock()
	if maxAll > 2 {
		t.Errorf("%d probes ran at once, Concurrency is 2", maxAll)
	}
	if maxPer > 1 {
		t.Errorf("runs of one watch stacked: %d at once", maxPer)
	}
	// A panicking probe neither kills the scheduler nor fails silently at Add.
	f.mu.Lock()
	f.delay, f.panicOn = 0, "boom.test"
	f.mu.Unlock()
	if _, err := m.Add(ctx, Spec{Target: probe.Target{Host: "boom.test"}, Schedule: "@every 1s"}); err == nil {
		t.Error("Add with a panicking probe succeeded")
	}
	f.mu.Lock()
	f.panicOn = ""
	f.mu.Unlock()
	w, err := m.Add(ctx, Spec{Target: probe.Target{Host: "boom.test"}, Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.panicOn = "boom.test"
	f.mu.Unlock()
	base = f.calls.Load()
	waitFor(t, 10*time.Second, "scheduler alive after panics", func() bool { return f.calls.Load() >= base+8 })
	if g, err := m.Get(ctx, w.ID); err != nil || g.State != StateUp {
		t.Errorf("panics counted as failures: %+v %v", g.State, err)
	}
	start := time.Now()
	m.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// A database path too long for sun_path still gets a working socket.
func TestLongDBPathSocket(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 120 {
		dir = dir + "/deeper-directory-level"
	}
	db := dir + "/tlswatch.db"
	sp := socketPath(db)
	if len(sp) >= 100 || sp != socketPath(db) {
		t.Fatalf("socket path %q (%d bytes)", sp, len(sp))
	}
	f := &fakeProbe{}
	a := openManager(t, testConfig(db, f.probe))
	b := openManager(t, testConfig(db, f.probe))
	if !a.IsOwner() || b.Role() != "follower" {
		t.Fatalf("roles %q %q", a.Role(), b.Role())
	}
	if _, err := b.Add(ctxT(t), Spec{Target: probe.Target{Host: "x.test"}}); err != nil {
		t.Fatal(err)
	}
	if ws, err := a.List(ctxT(t)); err != nil || len(ws) != 1 {
		t.Fatalf("List: %d %v", len(ws), err)
	}
}

// list_expiring: soonest not_after first (expired first of all), down
// watches that never showed a certificate last, healthy far-out ones absent.
func TestExpiringOrder(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	days := map[string]int{"a.test": 5, "b.test": 20, "d.test": -1, "e.test": 90, "f.test": 31}
	probeFn := func(ctx context.Context, tg probe.Target, o probe.Options) (probe.Report, error) {
		rep := probe.Report{Target: probe.TargetInfo{Host: tg.Host, Port: tg.Port}, CheckedAt: o.Now, Findings: []probe.Finding{}}
		d, ok := days[tg.Host]
		if !ok { // c.test: refused, no certificate
			rep.Status = probe.StatusDown
			return rep, nil
		}
		rep.Status, rep.Reachable, rep.Trusted = probe.StatusOK, true, true
		if d < 0 {
			rep.Status, rep.Trusted = probe.StatusDown, false
		}
		na := now.Add(time.Duration(d)*24*time.Hour + time.Hour)
		rep.Leaf = &probe.CertInfo{SHA256: "fp-" + tg.Host, NotAfter: na, DaysRemaining: probe.DaysRemaining(na, o.Now)}
		return rep, nil
	}
	cfg := testConfig(dbPath(t), probeFn)
	cfg.NoScheduler = true
	m := openManager(t, cfg)
	ctx := ctxT(t)
	for _, h := range []string{"e.test", "c.test", "b.test", "a.test", "d.test", "f.test"} {
		if _, err := m.Add(ctx, Spec{Target: probe.Target{Host: h}, FailureThreshold: 1}); err != nil {
			t.Fatal(err)
		}
	}
	hosts := func(ws []Watch) string {
		var s []string
		for _, w := range ws {
			s = append(s, w.Target.Host)
		}
		return fmt.Sprint(s)
	}
	ws, err := m.Expiring(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hosts(ws), "[d.test a.test b.test c.test]"; got != want {
		t.Errorf("Expiring(30) = %s, want %s", got, want)
	}
	for _, w := range ws {
		if w.LastReport == nil {
			t.Errorf("%s without its last report", w.Target.Host)
		}
	}
	if ws, _ := m.Expiring(ctx, 31); hosts(ws) != "[d.test a.test b.test f.test c.test]" {
		t.Errorf("Expiring(31) = %s", hosts(ws))
	}
	if ws, _ := m.Expiring(ctx, 4); hosts(ws) != "[d.test c.test]" {
		t.Errorf("Expiring(4) = %s", hosts(ws))
	}
	var fe *probe.FieldError
	if _, err := m.Expiring(ctx, 5000); !errors.As(err, &fe) || fe.Field != "within_days" {
		t.Errorf("Expiring(5000): %v", err)
	}
}
