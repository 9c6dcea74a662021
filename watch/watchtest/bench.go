package watchtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// SeedReport is a realistic Report (a real probe of a loopback server of
// the test PKI), to fill benchmark databases with.
func SeedReport(t testing.TB) probe.Report {
	sc := testlab.Start(t, testlab.NewPKI(t), testlab.ScenarioValid)
	tgt := probe.Target{Host: sc.Host, Port: sc.Port, IP: sc.IP, Timeout: 5 * time.Second}
	rep, err := probe.Run(context.Background(), tgt, probe.Options{Roots: sc.Roots, Now: sc.Now, NoAIA: true, NoRevocation: true})
	if err != nil || rep.Leaf == nil {
		t.Fatalf("seed probe: %v %+v", err, rep.Findings)
	}
	return rep
}

// FillDatabase writes n watches with one Report each (rep, renamed) to the
// store at path, as the benchmarks at the scale of 100,000 watches want
// them: 1% expire within 30 days, 0.2% are down, the rest expire in 31 to
// 390 days; four schedules (the shortest 30 minutes); checked within the
// last half hour, so that none is overdue when a process opens the file
// (a running fleet, not one back from a long stop).
func FillDatabase(path string, n int, rep probe.Report) error {
	db, err := store.Open(path, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	now := time.Now()
	scheds := []string{"@every 6h", "@every 1h", "0 * * * *", "@every 30m"}
	const batch = 2000
	for i := 0; i < n; i += batch {
		ups := make([]store.Update, 0, batch)
		for j := i; j < i+batch && j < n; j++ {
			days, state := 31+j%360, watch.StateUp
			switch {
			case j%100 == 7:
				days = j % 30
			case j%500 == 11:
				state = watch.StateDown
			}
			notAfter := now.Add(time.Duration(days)*24*time.Hour + time.Hour)
			r := rep
			r.Target.Host = fmt.Sprintf("host%06d.example.com", j)
			r.CheckedAt = now.Add(-time.Duration(j%1800) * time.Second)
			leaf := *r.Leaf
			leaf.NotAfter, leaf.DaysRemaining, leaf.SHA256 = notAfter, days, fmt.Sprintf("%064x", j)
			r.Leaf = &leaf
			rec := store.Record{ID: fmt.Sprintf("w_%016x", uint64(j)*0x9e3779b97f4a7c15), Target: r.Target,
				Schedule: scheds[j%len(scheds)], Thresholds: probe.DefaultThresholds, FailureThreshold: 3,
				CreatedAt: now, UpdatedAt: now, State: state, LastCheckedAt: r.CheckedAt, LastStatus: string(r.Status),
				NotAfter: notAfter, Fingerprint: leaf.SHA256}
			ups = append(ups, store.Update{Record: rec, Create: true, Report: &r})
		}
		if _, err := db.Apply(ups); err != nil {
			return err
		}
	}
	return nil
}
