package watch

import (
	"container/heap"
	"hash/fnv"
	"time"
)

// The scheduler is a min-heap of next fire times, not cron.Cron. cron.Cron
// re-sorts its whole entry slice every time it wakes (O(n log n) per fire)
// and starts a goroutine per run; at 100,000 watches firing ~28 times a
// second that is a core's worth of sorting. The heap is O(log n) per fire.
// cron still parses every spec and computes Schedule.Next, and the cron
// idioms are kept: panics are recovered per run, a run still going is
// skipped rather than stacked, and Stop waits for running probes.

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
		d := s.Every
		if d < floor {
			d = floor
		}
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
	spread := s.period / 2
	if spread > maxJitter {
		spread = maxJitter
	}
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
