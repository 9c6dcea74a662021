package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the history layer. Figures and commands: BENCHMARKS.md,
// section "History".

// BenchmarkLiveBytesPerProbe: live bytes per additional probe of an
// unchanged healthy endpoint, by the method of the issue: 40 watches, the
// file compacted (bbolt's Compact, as `bbolt compact`) before and after a
// run of probes, the growth divided by the probes.
func BenchmarkLiveBytesPerProbe(b *testing.B) {
	for _, tc := range []struct {
		name          string
		every         time.Duration
		warm, measure time.Duration
	}{
		{"every1s", time.Second, 10 * time.Minute, time.Hour},
		{"every1h", time.Hour, 2 * day, 30 * day},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var perProbe float64
			for b.Loop() {
				db, clk := openHistDB(b, Retention{Raw: 400 * day})
				db.bolt.NoSync = true
				clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
				s := newSim(b, db, clk, 40, tc.every)
				s.outages = false
				for _, w := range s.watches {
					w.notAfter = clk.t.Add(80 * day) // no rotation, no expiry stage
				}
				s.run(clk.t.Add(tc.warm), time.Second, nil)
				before := compactedSize(b, db)
				s.run(clk.t.Add(tc.measure), time.Second, nil)
				after := compactedSize(b, db)
				perProbe = float64(after-before) / float64(40*int(tc.measure/tc.every))
			}
			b.ReportMetric(perProbe, "live-B/probe")
		})
	}
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkSimulateFleet: N watches at @every 1h for two simulated years
// with the default retention, the pruner run once a simulated day. It
// reports the compacted size after the first year and the file's sizes
// every 30 days (TLSWATCH_SIM_REPORT), which must stay flat once retention
// is reached. Scale with TLSWATCH_SIM_WATCHES (default 200; the issue's
// figure is 10000) and TLSWATCH_SIM_DAYS (default 730). Commits group the
// probes of TLSWATCH_SIM_COMMIT of simulated time (default 1s, as the
// watcher does; a day runs much faster, but a commit that rewrites every
// watch's pages inflates bbolt's free list, and with it the uncompacted
// file, far beyond what the watcher's commits do). Run with -benchtime 1x.
func BenchmarkSimulateFleet(b *testing.B) {
	n := envInt("TLSWATCH_SIM_WATCHES", 200)
	days := envInt("TLSWATCH_SIM_DAYS", 730)
	commit := envDuration("TLSWATCH_SIM_COMMIT", time.Second) // simulated time per commit
	every := envInt("TLSWATCH_SIM_REPORT", 30)                // days between size lines
	for b.Loop() {
		db, clk := openHistDB(b, Retention{})
		db.bolt.NoSync = true
		clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		start := clk.t
		s := newSim(b, db, clk, n, time.Hour)
		var year1 fileSizes
		var compacted1 int64
		var monthly []fileSizes
		cpu0, wall0 := cpuTime(), time.Now()
		s.run(start.Add(time.Duration(days)*day), commit, func(now time.Time) {
			if _, err := db.Prune(context.Background(), 0); err != nil {
				b.Fatal(err)
			}
			d := int(now.Sub(start) / day)
			if d%every == 0 {
				fs := sizesOf(b, db)
				monthly = append(monthly, fs)
				st := db.bolt.Stats()
				line := fmt.Sprintf("day %3d: data %7.1f MB, live %7.1f MB, on disk %7.1f MB (free pages %d, freelist %.1f MB)",
					d, mb(fs.data), mb(fs.live), mb(fs.disk), st.FreePageN, float64(st.FreelistInuse)/1e6)
				b.Log(line)
				fmt.Fprintln(os.Stderr, line) // progress of a long run
			}
			if d == 365 {
				year1 = sizesOf(b, db)
				compacted1 = compactedSize(b, db)
				b.Logf("year 1: compacted %.1f MB", mb(compacted1))
			}
		})
		probes := float64(n) * float64(days) * 24
		b.Logf("%d watches, %d days, %.0f probes; %.1f µs CPU and %.1f µs wall per probe", n, days, probes,
			float64((cpuTime()-cpu0).Microseconds())/probes, float64(time.Since(wall0).Microseconds())/probes)
		end := sizesOf(b, db)
		b.ReportMetric(mb(end.data), "MB-data-end")
		b.ReportMetric(mb(end.live), "MB-live-end")
		b.ReportMetric(mb(compactedSize(b, db)), "MB-compacted-end")
		if days > 365 {
			b.ReportMetric(100*float64(end.data-year1.data)/float64(year1.data), "%-growth-year2")
		}
		if days >= 365 {
			b.ReportMetric(mb(compacted1), "MB-compacted-year1")
			b.ReportMetric(mb(year1.data), "MB-data-year1")
			b.ReportMetric(float64(compacted1)/float64(n), "B-compacted-per-watch")
		}
	}
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQueryMonthHourly: get_history's store query for a month of
// hourly data (720 samples with their Reports), and the same at hour and
// day resolution.
func BenchmarkQueryMonthHourly(b *testing.B) {
	db, clk := openHistDB(b, Retention{})
	db.bolt.NoSync = true
	clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSim(b, db, clk, 10, time.Hour)
	s.run(clk.t.Add(45*day), day, nil)
	id := s.watches[3].rec.ID
	for _, tc := range []struct {
		name string
		q    HistoryQuery
		min  int
	}{
		{"raw", HistoryQuery{Since: clk.t.Add(-30 * day), Resolution: ResolutionRaw}, 720},
		{"hour", HistoryQuery{Since: clk.t.Add(-30 * day), Resolution: ResolutionHour}, 720},
		{"day", HistoryQuery{Since: clk.t.Add(-30 * day), Resolution: ResolutionDay}, 30},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				p, err := db.Query(id, tc.q)
				if err != nil || len(p.Samples)+len(p.Aggregates) < tc.min {
					b.Fatal(len(p.Samples), len(p.Aggregates), err)
				}
			}
		})
	}
}
