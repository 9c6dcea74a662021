package watch

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// A certificate 5 days from expiry: the 7d stage alert fires once at Add,
// never again on later probes, and not again after a restart.
func TestStageAlertOnceAcrossRestart(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 5*24*time.Hour))
	path := dbPath(t)
	ctx := ctxT(t)

	var probes atomic.Int64
	m := openManager(t, testConfig(path, realProbe(p, &probes)))
	if !m.IsOwner() {
		t.Fatal("first manager is not the owner")
	}
	rec := &recorder{}
	m.Subscribe(rec)
	w, err := m.Add(ctx, Spec{Target: srv.target(5 * time.Second), Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.ID) != 18 || w.ID[:2] != "w_" {
		t.Errorf("id %q", w.ID)
	}
	if w.LastReport == nil || w.LastReport.ExpiryStage != "7d" || w.LastReport.Leaf == nil {
		t.Fatalf("first report: %+v", w.LastReport)
	}
	if w.State != StateUp || w.LastCheckedAt == nil || w.Schedule != "@every 1s" {
		t.Errorf("watch after Add: state %s checked %v schedule %q", w.State, w.LastCheckedAt, w.Schedule)
	}
	waitFor(t, 5*time.Second, "the 7d stage alert", func() bool { return rec.count(EventStageCrossed, "") == 1 })
	waitFor(t, 15*time.Second, "3 scheduled probes", func() bool { return probes.Load() >= 4 })
	if n := rec.count(EventStageCrossed, "stage 7d"); n != 1 {
		t.Fatalf("7d alerts: %d, want 1; events:%s", n, rec.dump())
	}
	if n := rec.count(EventStageCrossed, ""); n != 1 {
		t.Fatalf("stage alerts: %d, want only 7d; events:%s", n, rec.dump())
	}
	if rec.listChanges() != 1 {
		t.Errorf("list changes: %d, want 1", rec.listChanges())
	}
	exp, err := m.Expiring(ctx, 0)
	if err != nil || len(exp) != 1 || exp[0].ID != w.ID || exp[0].LastReport.ExpiryStage != "7d" {
		t.Fatalf("Expiring: %+v, %v", exp, err)
	}
	if exp, _ := m.Expiring(ctx, 3); len(exp) != 0 {
		t.Errorf("Expiring(3) lists a cert with 4 days left")
	}
	m.Close()

	var probes2 atomic.Int64
	m2 := openManager(t, testConfig(path, realProbe(p, &probes2)))
	rec2 := &recorder{}
	m2.Subscribe(rec2)
	waitFor(t, 15*time.Second, "3 probes after restart", func() bool { return probes2.Load() >= 3 })
	// Let the last result commit and any event get out.
	time.Sleep(200 * time.Millisecond)
	if n := rec2.count(EventStageCrossed, ""); n != 0 {
		t.Fatalf("stage alert repeated after restart:%s", rec2.dump())
	}
	h, err := m2.History(ctx, w.ID, 0)
	if err != nil || len(h) < 5 {
		t.Fatalf("history: %d, %v", len(h), err)
	}
	for i := 1; i < len(h); i++ {
		if h[i].CheckedAt.After(h[i-1].CheckedAt) {
			t.Fatal("history not newest first")
		}
	}
	if h, _ := m2.History(ctx, w.ID, 2); len(h) != 2 {
		t.Errorf("History limit 2: %d", len(h))
	}
}

// Down after 3 failed probes, up after 1 success; both notify.
func TestDownAfterThreeUpAfterOne(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	ctx := ctxT(t)
	m := openManager(t, testConfig(dbPath(t), realProbe(p, nil)))
	rec := &recorder{}
	m.Subscribe(rec)
	w, err := m.Add(ctx, Spec{Target: srv.target(2 * time.Second), Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	if w.State != StateUp || w.LastReport.Status != probe.StatusOK {
		t.Fatalf("after Add: %s / %s %v", w.State, w.LastReport.Status, w.LastReport.Findings)
	}
	srv.down.Store(true)
	waitFor(t, 15*time.Second, "state down", func() bool {
		g, err := m.Get(ctx, w.ID)
		return err == nil && g.State == StateDown
	})
	g, _ := m.Get(ctx, w.ID)
	if g.ConsecutiveFailures < 3 || g.LastReport.Status != probe.StatusDown {
		t.Errorf("down watch: failures %d status %s", g.ConsecutiveFailures, g.LastReport.Status)
	}
	waitFor(t, 5*time.Second, "down event", func() bool { return rec.count(EventStatusChanged, "is down") == 1 })
	// Down watches are listed as expiring.
	if exp, _ := m.Expiring(ctx, 30); len(exp) != 1 || exp[0].State != StateDown {
		t.Errorf("Expiring does not list the down watch: %+v", exp)
	}
	srv.down.Store(false)
	waitFor(t, 10*time.Second, "state up", func() bool {
		g, err := m.Get(ctx, w.ID)
		return err == nil && g.State == StateUp && g.ConsecutiveFailures == 0
	})
	waitFor(t, 5*time.Second, "up event", func() bool { return rec.count(EventStatusChanged, "up again") == 1 })
	if n := rec.count(EventStatusChanged, "is down"); n != 1 {
		t.Errorf("down events: %d%s", n, rec.dump())
	}
	for _, ev := range rec.events {
		if containsStr(ev.Message, "is down") && ev.Level != LevelCritical {
			t.Errorf("down event level %s", ev.Level)
		}
	}
}

// A new leaf fingerprint notifies and resets the stages.
func TestRotationResetsStages(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 20*24*time.Hour))
	ctx := ctxT(t)
	m := openManager(t, testConfig(dbPath(t), realProbe(p, nil)))
	rec := &recorder{}
	m.Subscribe(rec)
	w, err := m.Add(ctx, Spec{Target: srv.target(2 * time.Second), Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "30d alert", func() bool { return rec.count(EventStageCrossed, "stage 30d") == 1 })
	srv.rotate(leafIn(p, 10*24*time.Hour))
	waitFor(t, 10*time.Second, "rotation", func() bool { return rec.count(EventRotated, "") == 1 })
	waitFor(t, 5*time.Second, "14d alert of the new cert", func() bool { return rec.count(EventStageCrossed, "stage 14d") == 1 })
	srv.rotate(leafIn(p, 90*24*time.Hour))
	waitFor(t, 10*time.Second, "second rotation", func() bool { return rec.count(EventRotated, "") == 2 })
	g, err := m.Get(ctx, w.ID)
	if err != nil || g.LastReport.Leaf.DaysRemaining < 80 {
		t.Fatalf("after renewal: %+v %v", g.LastReport, err)
	}
	if n := rec.count(EventStageCrossed, ""); n != 2 {
		t.Errorf("stage alerts %d, want 2:%s", n, rec.dump())
	}
	if exp, _ := m.Expiring(ctx, 30); len(exp) != 0 {
		t.Errorf("renewed cert still expiring: %d", len(exp))
	}
}

func TestAddIdempotentRemoveAndValidation(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	ctx := ctxT(t)
	var probes atomic.Int64
	m := openManager(t, testConfig(dbPath(t), realProbe(p, &probes)))
	rec := &recorder{}
	m.Subscribe(rec)

	a, err := m.Add(ctx, Spec{Target: srv.target(0)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Schedule != DefaultSchedule || len(a.ThresholdsDays) != 4 || a.FailureThreshold != 3 {
		t.Errorf("defaults: %q %v %d", a.Schedule, a.ThresholdsDays, a.FailureThreshold)
	}
	tgt := srv.target(0)
	tgt.Host = "TLSWatch.test." // same identity after normalisation
	b, err := m.Add(ctx, Spec{Target: tgt, Schedule: "@every 1h", Thresholds: []int{7, 60, 7}})
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != a.ID || b.Schedule != "@every 1h" || len(b.ThresholdsDays) != 2 || b.ThresholdsDays[0] != 60 || !b.CreatedAt.Equal(a.CreatedAt) {
		t.Errorf("re-Add: %+v (first id %s)", b, a.ID)
	}
	if probes.Load() != 2 {
		t.Errorf("Add probes: %d, want one per Add", probes.Load())
	}
	tgt = srv.target(0)
	tgt.SNI = "other.test"
	c, err := m.Add(ctx, Spec{Target: tgt})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == a.ID {
		t.Error("different sni shares a watch")
	}
	if c.Target.SNI != "other.test" || a.Target.SNI != testlab.DefaultHost {
		t.Errorf("target sni shown: %q / %q", c.Target.SNI, a.Target.SNI)
	}
	ws, err := m.List(ctx)
	if err != nil || len(ws) != 2 {
		t.Fatalf("List: %d %v", len(ws), err)
	}
	// Validation.
	var fe *probe.FieldError
	for field, spec := range map[string]Spec{
		"schedule":          {Target: srv.target(0), Schedule: "every day"},
		"thresholds_days":   {Target: srv.target(0), Thresholds: []int{0}},
		"failure_threshold": {Target: srv.target(0), FailureThreshold: -1},
		"target":            {Target: probe.Target{Port: 443}},
	} {
		if _, err := m.Add(ctx, spec); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("Add with bad %s: %v", field, err)
		}
	}
	if _, err := m.History(ctx, a.ID, 501); !errors.As(err, &fe) || fe.Field != "limit" {
		t.Errorf("History(501): %v", err)
	}
	if _, err := m.Get(ctx, "w_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown: %v", err)
	}
	// By target string: two watches share host:port, so it is ambiguous.
	hp := testlab.DefaultHost + ":" + itoa(srv.Port)
	if _, err := m.Remove(ctx, "", hp); !errors.As(err, &fe) || fe.Field != "target" {
		t.Errorf("ambiguous Remove: %v", err)
	}
	if r, err := m.Remove(ctx, c.ID, ""); err != nil || r.ID != c.ID {
		t.Fatalf("Remove by id: %+v %v", r, err)
	}
	if r, err := m.Remove(ctx, "", "https://"+hp+"/mcp"); err != nil || r.ID != a.ID {
		t.Fatalf("Remove by target: %+v %v", r, err)
	}
	if _, err := m.Remove(ctx, a.ID, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if ws, _ := m.List(ctx); len(ws) != 0 {
		t.Errorf("after Remove List: %d", len(ws))
	}
	waitFor(t, 5*time.Second, "list_changed for 2 adds and 2 removes", func() bool { return rec.listChanges() == 4 })
}

func itoa(n int) string {
	return string(appendInt(nil, n))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}
