package watch

import (
	"math"
	"time"

	"github.com/tlswatch/tlswatch/store"
)

// Each watch shows its uptime and handshake latency over the last day and
// month (list_watches, the metrics). They come from the store's aggregates
// (store.DB.RecentOf), which take some 30 values per watch to merge: too
// much to do per List at 100,000 watches, so a background pass refreshes
// them every RecentEvery (the first a minute after start), and Get computes
// its one watch afresh.

// DefaultRecentEvery is how often the recent figures of every watch are
// recomputed.
const DefaultRecentEvery = 5 * time.Minute

// recentBatch is how many watches one read transaction computes.
const recentBatch = 2000

// figures are a watch's recent uptime and latency; NaN where unknown (no
// probe, or no handshake, in the window).
type figures struct {
	up24, up30, p50d, p95d, p50m, p95m float64
}

var noFigures = figures{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}

func figuresOf(r store.Recent) figures {
	f := noFigures
	if r.Day.Probes > 0 {
		f.up24 = r.Day.Uptime
	}
	if r.Month.Probes > 0 {
		f.up30 = r.Month.Uptime
	}
	if r.Day.Handshakes > 0 {
		f.p50d, f.p95d = r.Day.HandshakeP50MS, r.Day.HandshakeP95MS
	}
	if r.Month.Handshakes > 0 {
		f.p50m, f.p95m = r.Month.HandshakeP50MS, r.Month.HandshakeP95MS
	}
	return f
}

// apply sets w's recent fields (rounded for people: uptime to 0.01%,
// latency to 0.01 ms).
func (f figures) apply(w *Watch) {
	set := func(v float64, digits int) *float64 {
		if math.IsNaN(v) {
			return nil
		}
		p := math.Pow10(digits)
		r := math.Round(v*p) / p
		return &r
	}
	w.Uptime24h, w.Uptime30d = set(f.up24, 4), set(f.up30, 4)
	w.LatencyP50MS24h, w.LatencyP95MS24h = set(f.p50d, 2), set(f.p95d, 2)
	w.LatencyP50MS30d, w.LatencyP95MS30d = set(f.p50m, 2), set(f.p95m, 2)
}

// recentLoop refreshes every watch's figures a minute after start (start
// itself stays fast and small: the pass reads some 30 values a watch) and
// every RecentEvery after, until the engine closes.
func (e *Engine) recentLoop() {
	defer e.wg.Done()
	t := e.clock.NewTimer(min(e.cfg.RecentEvery, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C():
		}
		if n := e.refreshRecent(nil); n > 1000 {
			e.releaseMemory() // the pass read pages all over the file
		}
		t.Reset(e.cfg.RecentEvery)
	}
}

// refreshRecent recomputes the figures of ids (nil: every watch) and
// returns how many it read.
func (e *Engine) refreshRecent(ids []string) int {
	if ids == nil {
		e.mu.Lock()
		ids = make([]string, 0, len(e.entries))
		for id := range e.entries {
			ids = append(ids, id)
		}
		e.mu.Unlock()
	}
	n := len(ids)
	for len(ids) > 0 && e.ctx.Err() == nil {
		batch := ids[:min(len(ids), recentBatch)]
		ids = ids[len(batch):]
		got, err := e.st.RecentOf(batch, e.clock.Now())
		if err != nil {
			e.log.Warn("watch: compute recent uptime and latency", "err", err)
			return n
		}
		e.mu.Lock()
		for _, id := range batch {
			if en := e.entries[id]; en != nil {
				en.recent = noFigures
				if r, ok := got[id]; ok {
					en.recent = figuresOf(r)
				}
			}
		}
		e.mu.Unlock()
	}
	return n
}

// recentOf is one watch's figures, computed now.
func (e *Engine) recentOf(id string) figures {
	got, err := e.st.RecentOf([]string{id}, e.clock.Now())
	if r, ok := got[id]; ok && err == nil {
		return figuresOf(r)
	}
	return noFigures
}
