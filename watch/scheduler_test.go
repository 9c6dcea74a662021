package watch_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// gatedProbe answers like watchtest.Probe; while a gate is set, every probe
// waits for it, and it records how many run at once.
type gatedProbe struct {
	mu       sync.Mutex
	gate     chan struct{}
	panicOn  string
	inFlight map[string]int
	maxPer   int // most concurrent runs of one target seen
	cur, max int // concurrent runs overall
	calls    atomic.Int64
}

func (f *gatedProbe) probe(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
	f.calls.Add(1)
	f.mu.Lock()
	if f.inFlight == nil {
		f.inFlight = map[string]int{}
	}
	f.inFlight[t.Host]++
	f.cur++
	f.maxPer, f.max = max(f.maxPer, f.inFlight[t.Host]), max(f.max, f.cur)
	gate, panicOn := f.gate, f.panicOn
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
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	return watchtest.Probe(ctx, t, o)
}

func (f *gatedProbe) set(fn func(f *gatedProbe)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// Bounded concurrency, skip-not-stack, panics recovered, clean stop.
func TestSchedulerBoundsAndRecovers(t *testing.T) {
	f := &gatedProbe{}
	e := newEnv(t, watch.Config{Prober: &watch.Prober{Probe: f.probe}, Concurrency: 2}, time.Now())
	for i := 0; i < 6; i++ {
		if _, err := e.eng.Add(ctxT(t), watch.Spec{Target: fmt.Sprintf("h%d.test", i), Schedule: "@every 1s"}); err != nil {
			t.Fatal(err)
		}
	}
	// From now on every probe hangs until the gate opens: two run, four
	// wait in the queue, and further fires of all six are skipped.
	gate := make(chan struct{})
	f.set(func(f *gatedProbe) { f.gate, f.max, f.maxPer = gate, 0, 0 })
	base := f.calls.Load()
	e.settle(100*time.Millisecond, "two hanging probes", func() bool { return f.calls.Load() >= base+2 })
	for i := 0; i < 30; i++ {
		e.clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	if n := f.calls.Load(); n != base+2 {
		t.Errorf("%d probes started with 2 workers hanging, want 2", n-base)
	}
	close(gate)
	e.settle(100*time.Millisecond, "the queued runs", func() bool { return f.calls.Load() >= base+6 })
	f.set(func(f *gatedProbe) {
		if f.max > 2 {
			t.Errorf("%d probes ran at once, Concurrency is 2", f.max)
		}
		if f.maxPer > 1 {
			t.Errorf("runs of one watch stacked: %d at once", f.maxPer)
		}
		f.gate, f.panicOn = nil, "boom.test"
	})
	// A panicking probe neither kills the scheduler nor fails silently at Add.
	if _, err := e.eng.Add(ctxT(t), watch.Spec{Target: "boom.test", Schedule: "@every 1s"}); err == nil {
		t.Error("Add with a panicking probe succeeded")
	}
	f.set(func(f *gatedProbe) { f.panicOn = "" })
	w, err := e.eng.Add(ctxT(t), watch.Spec{Target: "boom.test", Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	f.set(func(f *gatedProbe) { f.panicOn = "boom.test" })
	base = f.calls.Load()
	e.settle(100*time.Millisecond, "the scheduler alive after panics", func() bool { return f.calls.Load() >= base+14 })
	if g := e.get(w.ID); g.State != watch.StateUp {
		t.Errorf("panics counted as failures: %s", g.State)
	}
	start := time.Now()
	e.close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// A schedule is honoured on the engine's clock: @every 1m fires once a
// minute of fake time, and the operator floor slows it.
func TestScheduleOnTheClock(t *testing.T) {
	for _, c := range []struct {
		floor     time.Duration
		probes    int64
		min, maxD time.Duration
	}{
		{0, 5, 4 * time.Minute, 6 * time.Minute},
		{5 * time.Minute, 3, 10 * time.Minute, 16 * time.Minute},
	} {
		f := &gatedProbe{}
		e := newEnv(t, watch.Config{Prober: &watch.Prober{Probe: f.probe}, MinInterval: c.floor}, time.Now())
		if _, err := e.eng.Add(ctxT(t), watch.Spec{Target: "a.test", Schedule: "@every 1m"}); err != nil {
			t.Fatal(err)
		}
		start, base := e.clock.Now(), f.calls.Load()
		e.settle(10*time.Second, fmt.Sprintf("%d scheduled probes", c.probes), func() bool { return f.calls.Load()-base >= c.probes })
		if d := e.clock.Now().Sub(start); d < c.min || d > c.maxD {
			t.Errorf("floor %v: %d probes took %v of the clock, want %v to %v", c.floor, c.probes, d, c.min, c.maxD)
		}
		e.close()
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
	e := newEnv(t, watch.Config{Prober: &watch.Prober{Probe: probeFn}, NoScheduler: true}, now)
	for _, h := range []string{"e.test", "c.test", "b.test", "a.test", "d.test", "f.test"} {
		if _, err := e.eng.Add(ctxT(t), watch.Spec{Target: h, FailureThreshold: 1}); err != nil {
			t.Fatal(err)
		}
	}
	hosts := func(within *int) string {
		l, err := e.eng.Expiring(ctxT(t), within, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, w := range l.Watches {
			if w.LastReport == nil {
				t.Errorf("%s without its last report", w.Target.Host)
			}
			s = append(s, w.Target.Host)
		}
		return fmt.Sprint(s)
	}
	for _, c := range []struct {
		within *int
		want   string
	}{
		{nil, "[d.test a.test b.test c.test]"},
		{ptr(31), "[d.test a.test b.test f.test c.test]"},
		{ptr(4), "[d.test c.test]"},
		{ptr(0), "[d.test c.test]"},
	} {
		if got := hosts(c.within); got != c.want {
			t.Errorf("Expiring(%v) = %s, want %s", c.within, got, c.want)
		}
	}
}
