package etcdstore_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/cluster/etcdstore"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

func openStore(t *testing.T) *etcdstore.Store {
	t.Helper()
	st, err := etcdstore.Open(ctxT(t), etcdstore.Config{Client: etcdlab.Shared().Client(t), Keys: testKeys(t), Writer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// History keeps the newest etcdstore.KeepSamples results: the newest samples in
// the state, older ones in sealed segments, each with the Report body in
// force then (the newest etcdstore.KeepBodies bodies), newest first.
func TestHistory(t *testing.T) {
	st := openStore(t)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rec := store.Record{ID: "w_hist", Target: probe.TargetInfo{Host: "h.test", Port: 443}, Schedule: "@every 1s",
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, State: watch.StatePending}
	const probes = etcdstore.KeepSamples + 60
	for i := 0; i < probes; i++ {
		rep := probe.Report{Target: rec.Target, CheckedAt: t0.Add(time.Duration(i) * time.Second), Status: probe.StatusOK,
			Reachable: true, Trusted: true, ExpiryStage: probe.StageNone, Findings: []probe.Finding{},
			Timing: probe.Timing{Handshake: float64(i), Total: float64(i) + 0.5},
			// A new body every 20 probes.
			TLS: &probe.TLSInfo{Version: "TLS 1.3", CipherSuite: fmt.Sprintf("suite-%d", i/20)}}
		rec.LastCheckedAt, rec.State = rep.CheckedAt, watch.StateUp
		applied, err := st.Apply([]store.Update{{Record: rec, Create: true, Report: &rep}})
		if err != nil || !applied[0] {
			t.Fatalf("probe %d: applied %v, %v", i, applied, err)
		}
	}
	h, err := st.History(rec.ID, etcdstore.KeepSamples)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != etcdstore.KeepSamples {
		t.Fatalf("%d reports, want %d", len(h), etcdstore.KeepSamples)
	}
	for i, r := range h {
		n := probes - 1 - i
		if !r.CheckedAt.Equal(t0.Add(time.Duration(n)*time.Second)) || r.Timing.Handshake != float64(n) || r.Status != probe.StatusOK {
			t.Fatalf("report %d: checked %s handshake %v status %s, want probe %d", i, r.CheckedAt, r.Timing.Handshake, r.Status, n)
		}
		// Bodies of the newest KeepBodies*20 probes are kept.
		if kept := n/20 > (probes-1)/20-etcdstore.KeepBodies; kept && (r.TLS == nil || r.TLS.CipherSuite != fmt.Sprintf("suite-%d", n/20)) {
			t.Fatalf("report %d (probe %d): body %+v, want suite-%d", i, n, r.TLS, n/20)
		}
	}
	v, err := st.Get(rec.ID)
	if err != nil || v.LastReport == nil || !v.LastReport.CheckedAt.Equal(h[0].CheckedAt) || v.Record.HistoryCount < etcdstore.KeepSamples {
		t.Fatalf("Get: %+v %v", v, err)
	}
	if _, err := st.History("w_nope", 1); err != store.ErrNotFound {
		t.Errorf("history of an unknown watch: %v", err)
	}
}

// Writes are conditional on the watch being as the writer read it: of two
// processes that write from the same version, the second is not applied,
// and its engine is handed the watch as it now is (a Change without
// events); a second watch for a target that has one is not created.
func TestConflictingWrites(t *testing.T) {
	srv, k := etcdlab.Shared(), testKeys(t)
	open := func() *etcdstore.Store {
		st, err := etcdstore.Open(ctxT(t), etcdstore.Config{Client: srv.Client(t), Keys: k, Writer: "w" + t.Name()[:1]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st1, st2 := open(), open()
	var heard []string
	var mu sync.Mutex
	st2.SubscribeRemote(func(c watch.Change) { mu.Lock(); heard = append(heard, c.Watch.ID); mu.Unlock() })
	t0 := time.Now().UTC()
	rec := store.Record{ID: "w_one", Target: probe.TargetInfo{Host: "one.test", Port: 443}, Schedule: "@every 1m",
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, State: watch.StatePending}
	mustApply := func(st *etcdstore.Store, u store.Update, want bool) {
		t.Helper()
		applied, err := st.Apply([]store.Update{u})
		if err != nil || applied[0] != want {
			t.Fatalf("Apply %s (rev %d): applied %v, %v; want %v", u.Record.ID, u.Record.Rev, applied, err, want)
		}
	}
	mustApply(st1, store.Update{Record: rec, Create: true}, true)
	var base store.View
	waitFor(t, wait, "the second process sees the watch", func() bool {
		v, err := st2.Get(rec.ID)
		base = v
		return err == nil
	})
	v1, _ := st1.Get(rec.ID)
	v1.Record.State = watch.StateUp
	mustApply(st1, store.Update{Record: v1.Record, Create: true}, true)
	stale := base.Record
	stale.State = watch.StateDown
	mustApply(st2, store.Update{Record: stale, Create: true}, false)
	if now, _ := st2.Get(rec.ID); now.Record.State != watch.StateUp || now.Record.Rev <= base.Record.Rev {
		t.Errorf("after losing: %s at rev %d, want up after %d", now.Record.State, now.Record.Rev, base.Record.Rev)
	}
	twin := rec
	twin.ID = "w_twin"
	mustApply(st2, store.Update{Record: twin, Create: true}, false)
	if _, err := st2.Get(twin.ID); err != store.ErrNotFound {
		t.Errorf("a second watch for one target: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The other process's writes (the second one maybe only through the
	// lost race), then for the twin both the twin and the watch that won.
	if n := len(heard); n < 4 || fmt.Sprint(heard[n-2:]) != "[w_twin w_one]" {
		t.Errorf("the losing process's engine was handed %v", heard)
	}
}
