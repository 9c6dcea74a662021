package watch_test

import (
	"crypto/tls"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// oneDayCert is a 1-day certificate issued at, as internal CAs issue them.
func oneDayCert(p *testlab.PKI, at time.Time) tls.Certificate {
	return p.Leaf(testlab.LeafOpts{NotBefore: at, NotAfter: at.Add(24*time.Hour - time.Second)})
}

// hourly advances the fake clock by an hour and waits until the probe that
// fires then is committed, nudging the clock (the writer's group commit
// waits on it too) by a few milliseconds at a time.
func (e *env) hourly(probes *atomic.Int64, id string) {
	e.t.Helper()
	want, prev := probes.Load()+1, e.get(id).LastCheckedAt
	e.clock.Advance(time.Hour)
	deadline := time.Now().Add(15 * time.Second)
	for {
		w := e.get(id)
		if probes.Load() >= want && w.LastCheckedAt != nil && w.LastCheckedAt.After(*prev) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the probe of %s was not committed (probes %d, want %d)", e.clock.Now(), probes.Load(), want)
		}
		time.Sleep(time.Millisecond)
		e.clock.Advance(5 * time.Millisecond)
	}
}

// eventCounts counts the recorded events by kind, once want's are all in
// (or after 10 s) and a little longer, so that a late one would show.
func (e *env) eventCounts(want map[string]int) map[string]int {
	e.t.Helper()
	count := func() map[string]int {
		m := map[string]int{}
		for _, ev := range e.rec.Events() {
			m[ev.Kind]++
		}
		return m
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := count()
		done := true
		for k, n := range want {
			done = done && got[k] >= n
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	return count()
}

// A 1-day certificate replaced every 8 hours, probed hourly for a simulated
// week with the default thresholds: never within the last third of its
// life, it reaches no stage, so subscribers hear of the watch coming up and
// of each rotation, and nothing else. When the renewals stop, the last
// certificate raises one stage alert and renewal_overdue names the cycle.
func TestShortLivedRotationWeek(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, oneDayCert(p, p.Now))
	var probes atomic.Int64
	e := newEnv(t, watch.Config{Prober: labProber(p, &probes), FlushInterval: time.Millisecond}, p.Now)
	w, err := e.eng.Add(ctxT(t), srv.spec("@every 1h"))
	if err != nil {
		t.Fatal(err)
	}
	const week = 7 * 24
	for h := 1; h <= week; h++ {
		if h%8 == 0 {
			srv.rotate(oneDayCert(p, e.clock.Now()))
		}
		e.hourly(&probes, w.ID)
	}
	want := map[string]int{watch.EventWatchAdded: 1, watch.EventStatusChanged: 1, watch.EventRotated: week / 8}
	if got := e.eventCounts(want); !maps.Equal(got, want) {
		t.Fatalf("events over the week: %v, want exactly %v", got, want)
	}

	// The automation stops: 20 more hours on the last certificate. At 16
	// hours old it is in its last third: one stage alert (1d), and the
	// status turns critical (expiring_soon within 7 days) once.
	for h := 1; h <= 20; h++ {
		e.hourly(&probes, w.ID)
	}
	want[watch.EventStageCrossed], want[watch.EventStatusChanged] = 1, 2
	if got := e.eventCounts(want); !maps.Equal(got, want) || e.rec.Count(watch.EventStageCrossed, "stage 1d") != 1 {
		t.Errorf("events once renewals stopped: %v, want %v; %+v", got, want, e.rec.Events())
	}
	last := e.get(w.ID).LastReport
	var overdue *probe.Finding
	for i, f := range last.Findings {
		if f.Code == probe.CodeRenewalOverdue {
			overdue = &last.Findings[i]
		}
	}
	if overdue == nil || !strings.Contains(overdue.Message, "replaced every 8 hours") || !strings.Contains(overdue.Message, "hour 21 of 24") {
		t.Errorf("renewal_overdue after the renewals stopped: %+v (findings %v)", overdue, last.Findings)
	}
}

// Hour and percent thresholds fire once per certificate each, most severe
// last, and survive a restart.
func TestHourAndPercentStagesOncePerCertificate(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, p.Leaf(testlab.LeafOpts{NotBefore: p.Now, NotAfter: p.Now.Add(48*time.Hour - time.Second)}))
	var probes atomic.Int64
	e := newEnv(t, watch.Config{Prober: labProber(p, &probes), FlushInterval: time.Millisecond}, p.Now)
	spec := srv.spec("@every 1h")
	spec.Thresholds = []any{"12h", "25%", "2h"} // 25% of 2 days: 12 hours as well; canonical order: 12h 2h 25%
	w, err := e.eng.Add(ctxT(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.ThresholdsDays; len(got) != 3 || got[0] != probe.Hours(12) || got[1] != probe.Hours(2) || got[2] != probe.Percent(25) {
		t.Fatalf("thresholds %v", got)
	}
	var stages []string
	collect := func() {
		for _, ev := range e.rec.Events() {
			if ev.Kind == watch.EventStageCrossed {
				stages = append(stages, ev.Message)
			}
		}
	}
	for h := 1; h <= 36; h++ {
		e.hourly(&probes, w.ID)
	}
	e.eventCounts(map[string]int{watch.EventStageCrossed: 1})
	collect()
	e.restart() // a new recorder: what fired before is in stages
	for h := 1; h <= 12; h++ {
		e.hourly(&probes, w.ID)
	}
	e.eventCounts(map[string]int{watch.EventStageCrossed: 2})
	collect()
	// 12h and 25% are reached together (the first listed wins the tie), 2h
	// later; expiry at 48h.
	if len(stages) != 3 || !strings.Contains(stages[0], "stage 12h") || !strings.Contains(stages[1], "stage 2h") || !strings.Contains(stages[2], "expired") {
		t.Errorf("stage alerts: %q", stages)
	}
	if g := e.get(w.ID); g.LifetimeLeftPct == nil || *g.LifetimeLeftPct != 0 {
		t.Errorf("lifetime_left_pct of the expired certificate: %v", g.LifetimeLeftPct)
	}
}
