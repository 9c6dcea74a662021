package etcdstore_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster/etcdstore"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// A database the current store wrote (history beyond a segment, alert
// state, a queued delivery and its mark, the feed) moves into etcd whole,
// and a second migration moves nothing twice.
func TestMigrate(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "tlswatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rec := store.Record{ID: "w_moved", Target: probe.TargetInfo{Host: "m.test", Port: 443}, Schedule: "@every 1m",
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, State: watch.StateDown,
		Fingerprint: "fp1", FiredStage: "7d", ProbedBy: "old"}
	alert := store.Alert{Fingerprint: "fp1", NotAfter: t0.Add(5 * 24 * time.Hour), FirstSeen: t0, Stages: []string{"7d"}}
	mark := "alert\x00hook\x00" + rec.ID + "\x00down"
	const results = 40
	for i := 0; i < results; i++ {
		rep := probe.Report{Target: rec.Target, CheckedAt: t0.Add(time.Duration(i) * time.Minute), Status: probe.StatusDown,
			ExpiryStage: probe.StageNone, Findings: []probe.Finding{}, Timing: probe.Timing{Total: float64(i)}}
		rec.LastCheckedAt = rep.CheckedAt
		up := store.Update{Record: rec, Create: true, Report: &rep}
		if i == results-1 {
			up.Alert = &alert
			up.Feed = []store.FeedEntry{{Time: rep.CheckedAt, Kind: watch.EventStatusChanged, Level: "critical", Message: "down", WatchID: rec.ID}}
			up.InTx = func(tx store.OutboxTx) error {
				payload, _ := json.Marshal(map[string]string{"watch_id": rec.ID, "kind": "status_changed"})
				return tx.Enqueue(map[string]bool{mark: true}, store.OutboxEntry{Channel: "hook", Payload: payload, CreatedAt: t0})
			}
		}
		if _, err := db.Apply([]store.Update{up}); err != nil {
			t.Fatal(err)
		}
	}
	srv, k := etcdlab.Shared(), testKeys(t)
	cli := srv.Client(t)
	stats, err := etcdstore.Migrate(ctxT(t), db, cli, k)
	if err != nil || stats.Watches != 1 || stats.Reports != results || stats.Alerts != 1 || stats.Outbox != 1 || stats.Marks != 1 || stats.Feed != 1 {
		t.Fatalf("Migrate: %+v, %v", stats, err)
	}
	st, err := etcdstore.Open(ctxT(t), etcdstore.Config{Client: cli, Keys: k, Writer: "check"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, err := st.Get(rec.ID)
	if err != nil || v.Record.State != watch.StateDown || v.Record.FiredStage != "7d" || v.Record.Fingerprint != "fp1" ||
		v.LastReport == nil || !v.LastReport.CheckedAt.Equal(rec.LastCheckedAt) {
		t.Fatalf("Get: %+v %v", v, err)
	}
	h, err := st.History(rec.ID, 100)
	if err != nil || len(h) != results || !h[0].CheckedAt.Equal(rec.LastCheckedAt) || !h[results-1].CheckedAt.Equal(t0) || h[results-1].Timing.Total != 0 {
		t.Fatalf("History: %d results, %v", len(h), err)
	}
	if a, ok, err := st.Alert(rec.ID, "fp1"); !ok || err != nil || a.Fired() != "7d" {
		t.Errorf("alert state: %+v %v %v", a, ok, err)
	}
	if f, err := st.Feed(0, 10); err != nil || len(f.Entries) != 1 || f.Entries[0].WatchID != rec.ID {
		t.Errorf("feed: %+v %v", f, err)
	}
	resp, err := cli.Get(ctxT(t), k.Prefix()+"outbox/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 2 {
		t.Errorf("outbox: %d keys (want the entry and its mark), %v", resp.Count, err)
	}
	again, err := etcdstore.Migrate(ctxT(t), db, cli, k)
	if err != nil || again.Watches != 0 || len(again.Skipped) != 1 || again.Feed != 0 || again.Outbox != 0 {
		t.Errorf("second Migrate: %+v, %v", again, err)
	}
}
