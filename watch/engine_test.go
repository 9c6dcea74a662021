package watch_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// The engine on a bbolt file keeps the watch.Service contract.
func TestEngineConformance(t *testing.T) {
	watchtest.Conformance(t, func(t *testing.T) watch.Service {
		e := newEnv(t, watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe, MCP: watchtest.MCP}, Clock: watch.RealClock()}, time.Now())
		return e.eng
	})
}

// A certificate 5 days from expiry: the 7d stage alert fires once at Add,
// never again on later probes, and not again after a restart.
func TestStageAlertOnceAcrossRestart(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 5*24*time.Hour))
	var probes atomic.Int64
	e := newEnv(t, watch.Config{Prober: labProber(p, &probes)}, p.Now)
	w, err := e.eng.Add(ctxT(t), srv.spec("@every 1s"))
	if err != nil {
		t.Fatal(err)
	}
	if w.LastReport == nil || w.LastReport.ExpiryStage != "7d" || w.State != watch.StateUp || w.Schedule != "@every 1s" {
		t.Fatalf("after Add: state %s report %+v", w.State, w.LastReport)
	}
	e.settle(100*time.Millisecond, "3 scheduled probes", func() bool { return probes.Load() >= 4 })
	e.settle(100*time.Millisecond, "the stage alert", func() bool { return e.rec.Count(watch.EventStageCrossed, "") >= 1 })
	if n := e.rec.Count(watch.EventStageCrossed, "stage 7d"); n != 1 {
		t.Fatalf("7d alerts: %d, want 1; events: %+v", n, e.rec.Events())
	}
	if n := e.rec.Count(watch.EventWatchAdded, ""); n != 1 {
		t.Errorf("watch_added: %d, want 1", n)
	}
	exp, err := e.eng.Expiring(ctxT(t), nil, "", 0)
	if err != nil || len(exp.Watches) != 1 || exp.Watches[0].ID != w.ID || exp.Watches[0].LastReport.ExpiryStage != "7d" {
		t.Fatalf("Expiring: %+v, %v", exp, err)
	}
	if exp, _ := e.eng.Expiring(ctxT(t), ptr(3), "", 0); len(exp.Watches) != 0 {
		t.Errorf("Expiring(3) lists a certificate with 4 days left")
	}

	e.restart()
	before := probes.Load()
	var h watch.History
	e.settle(100*time.Millisecond, "3 probes committed after the restart", func() bool {
		h, err = e.eng.History(ctxT(t), watch.HistoryQuery{ID: w.ID})
		return err == nil && probes.Load() >= before+3 && len(h.Samples) >= 7
	})
	if n := e.rec.Count(watch.EventStageCrossed, ""); n != 0 {
		t.Fatalf("stage alert repeated after restart: %+v", e.rec.Events())
	}
	for i := 1; i < len(h.Samples); i++ {
		if h.Samples[i].At.After(h.Samples[i-1].At) {
			t.Fatal("history not newest first")
		}
	}
}

// Down after 3 failed probes, up after 1 success; both notify.
func TestDownAfterThreeUpAfterOne(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	e := newEnv(t, watch.Config{Prober: labProber(p, nil)}, p.Now)
	w, err := e.eng.Add(ctxT(t), srv.spec("@every 1s"))
	if err != nil {
		t.Fatal(err)
	}
	if w.State != watch.StateUp || w.LastReport.Status != probe.StatusOK {
		t.Fatalf("after Add: %s / %s %v", w.State, w.LastReport.Status, w.LastReport.Findings)
	}
	srv.down.Store(true)
	e.settle(100*time.Millisecond, "state down", func() bool { return e.get(w.ID).State == watch.StateDown })
	if g := e.get(w.ID); g.ConsecutiveFailures < 3 || g.LastReport.Status != probe.StatusDown {
		t.Errorf("down watch: failures %d status %s", g.ConsecutiveFailures, g.LastReport.Status)
	}
	e.settle(100*time.Millisecond, "the down event", func() bool { return e.rec.Count(watch.EventStatusChanged, "is down") == 1 })
	if exp, _ := e.eng.Expiring(ctxT(t), nil, "", 0); len(exp.Watches) != 1 || exp.Watches[0].State != watch.StateDown {
		t.Errorf("Expiring does not list the down watch: %+v", exp)
	}
	srv.down.Store(false)
	e.settle(100*time.Millisecond, "state up", func() bool {
		g := e.get(w.ID)
		return g.State == watch.StateUp && g.ConsecutiveFailures == 0
	})
	e.settle(100*time.Millisecond, "the up event", func() bool { return e.rec.Count(watch.EventStatusChanged, "up again") == 1 })
	if n := e.rec.Count(watch.EventStatusChanged, "is down"); n != 1 {
		t.Errorf("down events: %d", n)
	}
	for _, ev := range e.rec.Events() {
		if strings.Contains(ev.Message, "is down") && ev.Level != watch.LevelCritical {
			t.Errorf("down event level %s", ev.Level)
		}
	}
}

// A new leaf fingerprint notifies and resets the stages.
func TestRotationResetsStages(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 20*24*time.Hour))
	e := newEnv(t, watch.Config{Prober: labProber(p, nil)}, p.Now)
	w, err := e.eng.Add(ctxT(t), srv.spec("@every 1s"))
	if err != nil {
		t.Fatal(err)
	}
	e.settle(100*time.Millisecond, "30d alert", func() bool { return e.rec.Count(watch.EventStageCrossed, "stage 30d") == 1 })
	srv.rotate(leafIn(p, 10*24*time.Hour))
	e.settle(100*time.Millisecond, "rotation", func() bool { return e.rec.Count(watch.EventRotated, "") == 1 })
	e.settle(100*time.Millisecond, "14d alert of the new cert", func() bool { return e.rec.Count(watch.EventStageCrossed, "stage 14d") == 1 })
	srv.rotate(leafIn(p, 90*24*time.Hour))
	e.settle(100*time.Millisecond, "second rotation", func() bool { return e.rec.Count(watch.EventRotated, "") == 2 })
	e.settle(100*time.Millisecond, "the renewal committed", func() bool {
		g := e.get(w.ID)
		return g.LastReport.Leaf != nil && g.LastReport.Leaf.DaysRemaining >= 80
	})
	if n := e.rec.Count(watch.EventStageCrossed, ""); n != 2 {
		t.Errorf("stage alerts %d, want 2: %+v", n, e.rec.Events())
	}
	if exp, _ := e.eng.Expiring(ctxT(t), nil, "", 0); len(exp.Watches) != 0 {
		t.Errorf("renewed cert still expiring: %d", len(exp.Watches))
	}
}

// A host that comes back as the same watch under another spelling; one
// probe per Add.
func TestAddNormalisesTheTarget(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	var probes atomic.Int64
	e := newEnv(t, watch.Config{Prober: labProber(p, &probes)}, p.Now)
	a, err := e.eng.Add(ctxT(t), srv.spec(""))
	if err != nil {
		t.Fatal(err)
	}
	s := srv.spec("@every 1h")
	s.Target = "https://TLSWatch.test.:" + strconv.Itoa(srv.Port) + "/mcp"
	b, err := e.eng.Add(ctxT(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != a.ID || b.Path != "/mcp" || b.Schedule != "@every 1h" {
		t.Errorf("re-Add: %+v (first id %s)", b, a.ID)
	}
	if probes.Load() != 2 {
		t.Errorf("Add probes: %d, want one per Add", probes.Load())
	}
}

// What the commit hook writes for a Change (an alert outbox entry) is
// committed in the transaction that records the change, so it is on disk
// when Add answers; a hook that fails rolls the write back and Add reports
// it.
func TestCommitHookDurableWithState(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 5*24*time.Hour))
	var fail atomic.Bool
	cfg := watch.Config{Prober: labProber(p, nil), Hook: func(tx store.OutboxTx, c watch.Change) error {
		if fail.Load() {
			return errTest
		}
		var entries []store.OutboxEntry
		for _, ev := range c.Events {
			entries = append(entries, store.OutboxEntry{Channel: "test", Payload: []byte(ev.Kind), CreatedAt: p.Now})
		}
		return tx.Enqueue(map[string]bool{"seen/" + c.Watch.ID: true}, entries...)
	}}
	e := newEnv(t, cfg, p.Now)
	w, err := e.eng.Add(ctxT(t), srv.spec("@every 1h"))
	if err != nil {
		t.Fatal(err)
	}
	// No waiting: Add returned, so the entries are committed.
	pend, err := e.db.Outbox().Pending(0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, en := range pend {
		kinds[string(en.Payload)]++
	}
	if len(pend) != 3 || kinds[watch.EventWatchAdded] != 1 || kinds[watch.EventStageCrossed] != 1 || kinds[watch.EventStatusChanged] != 1 {
		t.Errorf("outbox after Add: %v, want watch_added, status_changed and stage_crossed once", kinds)
	}
	if mk, err := e.db.Outbox().Marked("seen/" + w.ID); err != nil || !mk["seen/"+w.ID] {
		t.Errorf("mark written by the hook: %v %v", mk, err)
	}
	fail.Store(true)
	other := serveLab(t, leafIn(p, 5*24*time.Hour))
	if _, err := e.eng.Add(ctxT(t), other.spec("@every 1h")); err == nil {
		t.Fatal("Add succeeded although the commit hook failed")
	}
	if l, err := e.eng.List(ctxT(t), "", 0); err != nil || len(l.Watches) != 1 || l.Watches[0].ID != w.ID {
		t.Errorf("watches after a failed commit: %+v %v", l.Watches, err)
	}
	if n, _ := e.db.Outbox().Len(); n != 3 {
		t.Errorf("outbox grew to %d entries in a rolled-back commit", n)
	}
	if f, _ := e.eng.Alerts(ctxT(t), "", 0); len(f.Alerts) != 3 {
		t.Errorf("alert feed: %d entries, want the 3 events of the committed Add", len(f.Alerts))
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("hook refuses")
