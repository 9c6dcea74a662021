package etcdstore_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// get_history and the recent figures on etcd are computed from the samples
// the keyspace keeps: over the same probes they are what the embedded
// store answers from its aggregates (points, summary, the changes with
// their times, 24 h and 30 d figures).
func TestQueryMatchesEmbeddedStore(t *testing.T) {
	st := openStore(t)
	t0 := time.Date(2026, 11, 20, 10, 7, 0, 0, time.UTC)
	now := t0.Add(100 * 20 * time.Minute)
	db, err := store.Open(filepath.Join(t.TempDir(), "tlswatch.db"), store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rec := store.Record{ID: "w_query", Target: probe.TargetInfo{Host: "q.test", Port: 443}, Schedule: "@every 20m",
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, State: watch.StatePending}
	for i := range 100 {
		rep := probe.Report{Target: rec.Target, CheckedAt: t0.Add(time.Duration(i) * 20 * time.Minute), Status: probe.StatusOK,
			Reachable: true, Trusted: true, ExpiryStage: probe.StageNone, Findings: []probe.Finding{},
			Timing: probe.Timing{DNS: 0.5, Connect: 1, Handshake: float64(10 + i%13), Total: float64(12 + i%13)},
			TLS:    &probe.TLSInfo{Version: "TLS 1.2", CipherSuite: "suite-a"}}
		if i >= 60 {
			rep.TLS.Version = "TLS 1.3" // a change of configuration
		}
		if i%17 == 5 {
			rep.Status, rep.Reachable, rep.Trusted, rep.TLS, rep.Timing = probe.StatusDown, false, false, nil, probe.Timing{DNS: 0.5, Total: 1}
		}
		rec.LastCheckedAt, rec.State = rep.CheckedAt, watch.StateUp
		for _, s := range []interface {
			Apply([]store.Update) ([]bool, error)
		}{st, db} {
			if ok, err := s.Apply([]store.Update{{Record: rec, Create: true, Report: &rep}}); err != nil || !ok[0] {
				t.Fatalf("probe %d: %v, %v", i, ok, err)
			}
		}
	}
	for _, q := range []store.HistoryQuery{
		{}, {Limit: 25}, {Since: t0.Add(5 * time.Hour), Until: t0.Add(20 * time.Hour)},
		{Resolution: store.ResolutionHour}, {Resolution: store.ResolutionHour, Limit: 7}, {Resolution: store.ResolutionDay},
	} {
		q.Now = now
		want, err := db.Query(rec.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.Query(rec.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := comparable(t, got), comparable(t, want); g != w {
			i := 0
			for i < min(len(g), len(w)) && g[i] == w[i] {
				i++
			}
			t.Errorf("%+v: from byte %d, etcd\n%.400s\nembedded\n%.400s", q, i, g[max(i-100, 0):], w[max(i-100, 0):])
		}
	}
	want, err := db.RecentOf([]string{rec.ID}, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.RecentOf([]string{rec.ID, "w_nope"}, now)
	if err != nil || len(got) != 1 {
		t.Fatalf("RecentOf: %v, %v", got, err)
	}
	if g, w := jsonString(t, got[rec.ID]), jsonString(t, want[rec.ID]); g != w {
		t.Errorf("recent: etcd %s, embedded %s", g, w)
	}
	if _, err := st.Query("w_nope", store.HistoryQuery{}); err != store.ErrNotFound {
		t.Errorf("query of an unknown watch: %v", err)
	}
}

// comparable is a page without what differs by design between the stores:
// Report references (each store hashes its own). (The keyspace stores a
// body per distinct content, so it sees a change wherever any part of the
// Report's content changes, where the embedded store sees one only in
// status, findings, certificate, chain, TLS version or stage: the probes
// here change only in those.)
func comparable(t *testing.T, p store.HistoryPage) string {
	for i := range p.Samples {
		p.Samples[i].Report = ""
	}
	type change struct {
		At                time.Time
		Kind, Status, TLS string
	}
	var changes []change
	for _, r := range p.Reports {
		c := change{At: r.At, Kind: r.Kind, Status: string(r.Report.Status)}
		if r.Report.TLS != nil {
			c.TLS = r.Report.TLS.Version
		}
		changes = append(changes, c)
	}
	p.Reports = nil
	return jsonString(t, struct {
		Page    store.HistoryPage
		Changes []change
	}{p, changes})
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
