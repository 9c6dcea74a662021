package store

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// A store of samples (the etcd keyspace) answers from them what this store
// answers from its aggregates and changes: the same points, summary,
// Reports at each change and recent figures, for every resolution, range
// and limit, over the same probes.
func TestPageFromSamplesMatchesStore(t *testing.T) {
	db, clk := openHistDB(t, Retention{})
	addWatch(t, db, "w_1")
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Date(2026, 10, 1, 0, 30, 0, 0, time.UTC)
	fp := "fpA"
	for h := range 20 * 24 {
		at := start.Add(time.Duration(h)*time.Hour + time.Duration(rng.IntN(600))*time.Second)
		st := probe.Status("ok")
		if rng.IntN(12) == 0 {
			st = "down"
		}
		if h == 9*24 {
			fp = "fpB" // a rotation
		}
		record(t, db, "w_1", fullReport(at, st, fp, start.Add(80*day), 5+20*rng.Float64()))
	}
	clk.t = start.Add(20*24*time.Hour - time.Minute)
	all, err := db.Query("w_1", HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	samples := slices.Clone(all.Samples)
	slices.Reverse(samples) // oldest first
	reports := map[string]probe.Report{}
	for _, sr := range all.Reports {
		reports[sr.Ref] = sr.Report
	}
	// A stored change has the time and timing of its first probe; the
	// samples keep three of the four latencies.
	reportOf := func(i int) (probe.Report, bool) {
		r, ok := reports[samples[i].Report]
		r.CheckedAt, r.Timing = samples[i].At, probe.Timing{}
		return r, ok
	}
	for _, q := range []HistoryQuery{
		{}, {Limit: 30}, {Since: start.Add(5 * day), Until: start.Add(12 * day)},
		{Resolution: ResolutionHour}, {Resolution: ResolutionHour, Limit: 40}, {Resolution: ResolutionHour, Since: start.Add(8*day + 5*time.Hour)},
		{Resolution: ResolutionDay}, {Resolution: ResolutionDay, Limit: 3}, {Resolution: ResolutionDay, Since: start.Add(2 * day), Until: start.Add(15 * day)},
		{MaxReports: 3}, {Resolution: ResolutionHour, Since: start.Add(3*day + 90*time.Minute), Until: start.Add(4*day + 30*time.Minute)},
	} {
		t.Run(jsonOf(t, q), func(t *testing.T) {
			want, err := db.Query("w_1", q)
			if err != nil {
				t.Fatal(err)
			}
			got := PageFromSamples(samples, q, reportOf)
			type key struct {
				At        time.Time
				Kind, Ref string
			}
			keys := func(rs []StoredReport) (out []key) {
				for _, r := range rs {
					out = append(out, key{r.At, r.Kind, r.Ref})
				}
				return out
			}
			for _, c := range []struct {
				what      string
				got, want any
			}{
				{"samples", got.Samples, want.Samples}, {"aggregates", got.Aggregates, want.Aggregates},
				{"summary", got.Summary, want.Summary}, {"reports", keys(got.Reports), keys(want.Reports)},
				{"state since", got.StateSince, want.StateSince}, {"more", got.More, want.More},
			} {
				if g, w := jsonOf(t, c.got), jsonOf(t, c.want); g != w {
					t.Errorf("%s from samples:\n%.600s\nstore:\n%.600s", c.what, g, w)
				}
			}
			for i := range min(len(got.Reports), len(want.Reports)) {
				want.Reports[i].Report.Timing = probe.Timing{}
				if g, w := jsonOf(t, got.Reports[i].Report), jsonOf(t, want.Reports[i].Report); g != w {
					t.Errorf("report %d from samples:\n%.600s\nstore:\n%.600s", i, g, w)
					break
				}
			}
		})
	}
	recent, err := db.RecentOf([]string{"w_1"}, clk.t)
	if err != nil {
		t.Fatal(err)
	}
	if got := RecentFromSamples(samples, clk.t); jsonOf(t, got) != jsonOf(t, recent["w_1"]) {
		t.Errorf("recent from samples %s, store %s", jsonOf(t, got), jsonOf(t, recent["w_1"]))
	}
}
