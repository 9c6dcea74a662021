package watch

import (
	"container/heap"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// The scheduler is a min-heap of next fire times, not cron.Cron. cron.Cron
// re-sorts its whole entry slice every time it wakes (O(n log n) per fire)
// and starts a goroutine per run; at 100,000 watches firing ~28 times a
// second that is a core's worth of sorting. The heap is O(log n) per fire.
// cron still parses every spec and computes Schedule.Next, and the cron
// idioms are kept: panics are recovered per run, a run still going is
// skipped rather than stacked, and Close waits for running probes. Time is
// the engine's Clock.

type heapItem struct {
	at  time.Time
	e   *entry
	gen uint64 // stale when != e.gen (rescheduled or removed)
}

type schedHeap []heapItem

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h schedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)        { *h = append(*h, x.(heapItem)) }
func (h *schedHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = heapItem{}
	*h = old[:len(old)-1]
	return it
}

func (h *schedHeap) push(it heapItem) { heap.Push(h, it) }
func (h *schedHeap) pop() heapItem    { return heap.Pop(h).(heapItem) }

// idHash gives every watch a stable pseudo-random phase, so that 10,000
// watches on one schedule spread over the interval instead of firing in the
// same second, and the spread is the same after a restart or handover.
func idHash(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// nextFire returns the first fire time of a watch strictly after `after`,
// honouring the operator floor (no two fires closer than floor) relative to
// last (zero when it never fired).
func nextFire(s Schedule, hash uint64, after, last time.Time, floor, maxJitter time.Duration) time.Time {
	if s.Every > 0 {
		// A grid of period d with a per-watch phase: fires at
		// epoch + k*d + phase. Spreads watches uniformly over d.
		d := max(s.Every, floor)
		phase := int64(hash % uint64(d))
		a := after.UnixNano()
		k := (a - phase) / int64(d)
		t := k*int64(d) + phase
		for t <= a {
			t += int64(d)
		}
		return time.Unix(0, t)
	}
	// Cron specs: the spec's times plus a per-watch offset, bounded by
	// maxJitter and by half the period so the order of fires is kept.
	spread := min(s.period/2, maxJitter)
	var off time.Duration
	if spread > 0 {
		off = time.Duration(hash % uint64(spread))
	}
	base := s.cron.Next(after.Add(-off))
	for i := 0; i < 10000 && !base.IsZero(); i++ {
		t := base.Add(off)
		if t.After(after) && (last.IsZero() || floor <= 0 || !t.Before(last.Add(floor))) {
			return t
		}
		base = s.cron.Next(base)
	}
	if base.IsZero() {
		return time.Time{}
	}
	return base.Add(off)
}

// startScheduler fills the heap and starts the scheduler and its workers.
func (e *Engine) startScheduler() {
	now := e.clock.Now()
	e.heap = make(schedHeap, 0, len(e.entries))
	for _, en := range e.entries {
		e.heap = append(e.heap, heapItem{at: e.firstFire(en, now), e: en, gen: en.gen})
	}
	heap.Init(&e.heap)
	// Fill the Report cache of what list_expiring shows now, so its first
	// call after a start is as fast as the rest (a long-lived serve; the
	// CLI asks once and would only pay twice).
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if _, _, err := e.expiring(DefaultExpiringDays, nil, math.MaxInt32); err != nil && e.ctx.Err() == nil {
			e.log.Warn("watch: warm the expiring cache", "err", err)
		}
		e.releaseMemory()
	}()
	e.wg.Add(1)
	go e.scheduler()
	for i := 0; i < e.cfg.Concurrency; i++ {
		e.wg.Add(1)
		go e.worker()
	}
}

// firstFire schedules a watch after a (re)start: on its regular grid, unless
// it is overdue (the process was down longer than its period), in which case
// it is probed soon, spread over StartupSpread so a restart does not probe
// 100,000 watches at once.
func (e *Engine) firstFire(en *entry, now time.Time) time.Time {
	period := max(en.sched.period, e.cfg.MinInterval)
	last := en.rec.LastCheckedAt
	if last.IsZero() || now.Sub(last) > period {
		spread := min(e.cfg.StartupSpread, period)
		if spread <= 0 {
			return now
		}
		return now.Add(time.Duration(en.hash % uint64(spread)))
	}
	return nextFire(en.sched, en.hash, now, last, e.cfg.MinInterval, e.cfg.MaxJitter)
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) scheduler() {
	defer e.wg.Done()
	timer := e.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, wait := e.takeDue()
		e.queue.push(due)
		timer.Reset(wait)
		select {
		case <-e.ctx.Done():
			return
		case <-e.wake:
		case <-timer.C():
		}
	}
}

// takeDue pops the watches due now (skipping those still running) and
// puts them back at their next fire; wait is the time to the next one.
func (e *Engine) takeDue() (due []*entry, wait time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	for len(e.heap) > 0 && !e.heap[0].at.After(now) {
		it := e.heap.pop()
		en := it.e
		if it.gen != en.gen || en.removed {
			continue
		}
		if en.running {
			e.log.Debug("watch: previous run still going, skipping", "id", en.rec.ID)
		} else {
			en.running = true
			due = append(due, en)
		}
		if next := nextFire(en.sched, en.hash, now, now, e.cfg.MinInterval, e.cfg.MaxJitter); !next.IsZero() {
			e.heap.push(heapItem{at: next, e: en, gen: en.gen})
		}
	}
	wait = time.Hour
	if len(e.heap) > 0 {
		wait = e.heap[0].at.Sub(now)
	}
	return due, wait
}

// reschedule puts en on its grid from now (after Add changed its schedule).
// Caller holds e.mu.
func (e *Engine) reschedule(en *entry, now time.Time) {
	if e.cfg.NoScheduler {
		return
	}
	en.gen++
	if next := nextFire(en.sched, en.hash, now, now, e.cfg.MinInterval, e.cfg.MaxJitter); !next.IsZero() {
		e.heap.push(heapItem{at: next, e: en, gen: en.gen})
	}
	e.poke()
}

// runQueue holds due watches for the workers.
type runQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	items   []*entry
	stopped bool
}

func (q *runQueue) init() { q.cond = sync.NewCond(&q.mu) }

func (q *runQueue) push(ens []*entry) {
	if len(ens) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, ens...)
	q.cond.Broadcast()
	q.mu.Unlock()
}

// pop waits for an entry; false once the queue is stopped.
func (q *runQueue) pop() (*entry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.stopped {
		q.cond.Wait()
	}
	if q.stopped {
		return nil, false
	}
	en := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return en, true
}

func (q *runQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (e *Engine) worker() {
	defer e.wg.Done()
	for {
		en, ok := e.queue.pop()
		if !ok {
			return
		}
		e.runScheduled(en)
	}
}

func (e *Engine) runScheduled(en *entry) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("watch: probe panicked", "id", en.rec.ID, "panic", r, "stack", string(debug.Stack()))
		}
		e.mu.Lock()
		en.running = false
		e.mu.Unlock()
	}()
	rec, ok := e.claim(en)
	if !ok {
		return
	}
	rep, err := e.probe(e.ctx, rec)
	if err != nil {
		e.log.Warn("watch: probe could not run", "id", rec.ID, "target", targetName(rec.Target), "err", err)
		return
	}
	if e.ctx.Err() != nil {
		// Stopping: the probe was cut short, its "timeout" is ours, not the
		// server's. Do not count it.
		return
	}
	e.mu.Lock()
	if !en.removed && !e.closed {
		e.applyLocked(en, &rep, false, false, nil)
	}
	e.mu.Unlock()
}

// claim returns the record to probe, or false when the watch is gone or
// another node owns it. A record this engine may be behind on is re-read.
func (e *Engine) claim(en *entry) (store.Record, bool) {
	e.mu.Lock()
	if en.removed {
		e.mu.Unlock()
		return store.Record{}, false
	}
	if own := e.cfg.Ownership; own != nil && !own.Owns(en.rec.ID) {
		en.stale = true
		e.mu.Unlock()
		return store.Record{}, false
	}
	rec, stale := en.rec, en.stale
	e.mu.Unlock()
	if !stale {
		return rec, true
	}
	v, err := e.st.Get(rec.ID)
	if err != nil {
		e.log.Warn("watch: re-read a watch before probing it", "id", rec.ID, "err", err)
		return store.Record{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if en.removed {
		return store.Record{}, false
	}
	if v.Record.Schedule != en.rec.Schedule {
		en.sched = e.newEntry(v.Record).sched
	}
	en.rec, en.stale, en.last = v.Record, false, nil
	return en.rec, true
}

// probe runs the watch's probe with a deadline of its timeout plus a margin
// for the probe's own bookkeeping.
func (e *Engine) probe(ctx context.Context, rec store.Record) (rep probe.Report, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutOf(&rec)+5*time.Second)
	defer cancel()
	defer func() {
		// A panicking probe is our bug, not the server's: no Report, and
		// neither the scheduler nor an Add caller goes down with it.
		if r := recover(); r != nil {
			e.log.Error("watch: probe panicked", "id", rec.ID, "panic", r, "stack", string(debug.Stack()))
			rep, err = probe.Report{}, fmt.Errorf("watch: probe of %s panicked: %v", targetName(rec.Target), r)
		}
	}()
	rep, err = e.cfg.Prober.Run(ctx, &rec, e.clock.Now())
	if err != nil {
		return probe.Report{}, err
	}
	if rep.CheckedAt.IsZero() {
		rep.CheckedAt = e.clock.Now()
	}
	return rep, nil
}
