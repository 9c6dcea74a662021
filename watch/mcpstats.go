package watch

import (
	"math"
	"slices"

	"github.com/tlswatch/tlswatch/store"
)

// mcpStats summarises the recent window of an MCP-level watch (nil when it
// has none). The window lives in the record, so every process that shows
// the watch computes the same figures, and a restart keeps them.
//
// It is the one place these figures come from: once the history keeps
// per-watch aggregates with the MCP latency of each probe, this can read
// them instead (over a day or a month rather than MCPRecentKeep probes)
// without its callers changing.
func mcpStats(w []store.RecentProbe) *MCPStats {
	if len(w) == 0 {
		return nil
	}
	s := &MCPStats{Probes: len(w), Since: w[0].At.UTC()}
	lat := make([]float64, 0, len(w))
	for _, p := range w {
		if p.OK {
			lat = append(lat, p.LatencyMS)
		}
	}
	s.Uptime = float64(len(lat)) / float64(len(w))
	if len(lat) > 0 {
		slices.Sort(lat)
		p50, p95 := nearestRank(lat, 0.50), nearestRank(lat, 0.95)
		s.LatencyMSP50, s.LatencyMSP95 = &p50, &p95
	}
	return s
}

// nearestRank is the q-quantile of sorted values by the nearest-rank
// method: the smallest value with at least q of all values at or below it
// (always one that was measured).
func nearestRank(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}
