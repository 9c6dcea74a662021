// Package watchtest helps test code that uses package watch: a fake Clock
// that moves only when told, a canned probe, and the conformance suite that
// every watch.Service (the real one and every fake) must pass.
package watchtest

import (
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/watch"
)

// Clock is a fake watch.Clock: time moves only with Advance, and the
// timers whose time has come fire then. Safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*timer]struct{}
}

var _ watch.Clock = (*Clock)(nil)

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, timers: make(map[*timer]struct{})}
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the time forward by d and fires every timer due by then.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(c.now.Add(d))
}

// Set moves the time to t (forward or back) and fires every timer due by
// then.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(t)
}

func (c *Clock) setLocked(t time.Time) {
	c.now = t
	for tm := range c.timers {
		if !tm.at.After(c.now) {
			tm.fireLocked(c.now)
		}
	}
}

// NewTimer returns a timer that fires once the fake time reaches now+d.
func (c *Clock) NewTimer(d time.Duration) watch.Timer {
	t := &timer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

type timer struct {
	c  *Clock
	ch chan time.Time
	at time.Time
}

func (t *timer) C() <-chan time.Time { return t.ch }

// Reset re-arms the timer; like time.Timer since Go 1.23 it drops a value
// not yet received.
func (t *timer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drainLocked()
	t.at = t.c.now.Add(d)
	if d <= 0 {
		t.fireLocked(t.c.now)
		return
	}
	t.c.timers[t] = struct{}{}
}

func (t *timer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	delete(t.c.timers, t)
	t.drainLocked()
}

func (t *timer) drainLocked() {
	select {
	case <-t.ch:
	default:
	}
}

func (t *timer) fireLocked(now time.Time) {
	delete(t.c.timers, t)
	select {
	case t.ch <- now:
	default:
	}
}
