package watch_test

import (
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/watch"
)

// A watch shows its 24-hour and 30-day uptime and handshake latency: Get
// computes them afresh, List shows what the background pass computed last.
func TestRecentUptimeAndLatency(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	e := newEnv(t, watch.Config{Prober: labProber(p, nil), RecentEvery: time.Minute}, p.Now)
	w, err := e.eng.Add(ctxT(t), srv.spec("@every 1s"))
	if err != nil {
		t.Fatal(err)
	}
	e.settle(100*time.Millisecond, "four probes", func() bool { return e.get(w.ID).ConsecutiveFailures == 0 && probesOf(e, w.ID) >= 4 })
	srv.down.Store(true)
	e.settle(100*time.Millisecond, "a failed probe", func() bool { return e.get(w.ID).ConsecutiveFailures >= 1 })
	srv.down.Store(false)
	e.settle(100*time.Millisecond, "up again", func() bool { return e.get(w.ID).ConsecutiveFailures == 0 })

	g := e.get(w.ID)
	h, err := e.eng.History(ctxT(t), watch.HistoryQuery{ID: w.ID, Since: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	want := float64(h.Summary.Probes-h.Summary.Failures) / float64(h.Summary.Probes)
	if g.Uptime24h == nil || g.Uptime30d == nil || *g.Uptime24h != *g.Uptime30d || h.Summary.Failures == 0 ||
		*g.Uptime24h < want-0.01 || *g.Uptime24h > want+0.01 || *g.Uptime24h >= 1 {
		t.Errorf("Get: uptime 24h %v, 30d %v; the day's history has %d of %d probes failed", g.Uptime24h, g.Uptime30d, h.Summary.Failures, h.Summary.Probes)
	}
	if g.LatencyP50MS24h == nil || g.LatencyP95MS24h == nil || *g.LatencyP50MS24h <= 0 || *g.LatencyP95MS24h < *g.LatencyP50MS24h || g.LatencyP50MS30d == nil {
		t.Errorf("Get: latency p50 %v p95 %v", g.LatencyP50MS24h, g.LatencyP95MS24h)
	}
	e.clock.Advance(time.Minute) // the background pass
	e.settle(100*time.Millisecond, "List with the figures", func() bool {
		p, err := e.eng.List(ctxT(t), "", 0)
		ws := p.Watches
		return err == nil && len(ws) == 1 && ws[0].Uptime24h != nil && *ws[0].Uptime24h < 1
	})
}

func probesOf(e *env, id string) int {
	h, err := e.eng.History(ctxT(e.t), watch.HistoryQuery{ID: id})
	if err != nil {
		return 0
	}
	return len(h.Samples)
}
