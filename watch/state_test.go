package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

var now0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func leafRep(at time.Time, status probe.Status, fp string, notAfter time.Time) *probe.Report {
	return &probe.Report{CheckedAt: at, Status: status, Reachable: true, Trusted: status != probe.StatusDown,
		Findings: []probe.Finding{}, Leaf: &probe.CertInfo{SHA256: fp, NotAfter: notAfter, DaysRemaining: probe.DaysRemaining(notAfter, at)}}
}

func downRep(at time.Time) *probe.Report {
	return &probe.Report{CheckedAt: at, Status: probe.StatusDown,
		Findings: []probe.Finding{{Code: probe.CodeConnectionRefused, Severity: probe.SeverityCritical, Message: "refused"}}}
}

// machine drives evaluate like the engine does, with an in-memory alert store.
type machine struct {
	rec    store.Record
	alerts map[string]store.Alert
	at     time.Time
}

func newMachine() *machine {
	return &machine{rec: store.Record{ID: "w_t", Target: probe.TargetInfo{Host: "a.test", Port: 443},
		Thresholds: probe.DefaultThresholds, FailureThreshold: 3, State: StatePending}, alerts: map[string]store.Alert{}, at: now0}
}

func (m *machine) step(rep *probe.Report) []string {
	m.at = m.at.Add(time.Hour)
	out := evaluate(m.rec, rep, m.at, func(fp string) (store.Alert, bool) { a, ok := m.alerts[fp]; return a, ok })
	m.rec = out.rec
	if out.alert != nil {
		m.alerts[out.alert.Fingerprint] = *out.alert
	}
	var evs []string
	for _, e := range out.events {
		evs = append(evs, e.Kind+"/"+e.Level)
	}
	return evs
}

func TestStateUpDown(t *testing.T) {
	m := newMachine()
	far := now0.Add(200 * 24 * time.Hour)
	steps := []struct {
		rep   func(at time.Time) *probe.Report
		state string
		evs   string
	}{
		{func(at time.Time) *probe.Report { return leafRep(at, "ok", "A", far) }, StateUp, "[status_changed/info]"},
		{func(at time.Time) *probe.Report { return leafRep(at, "ok", "A", far) }, StateUp, "[]"},
		{downRep, StateUp, "[status_changed/warning]"}, // last_report.status changed; not down yet
		{downRep, StateUp, "[]"},
		{downRep, StateDown, "[status_changed/critical]"},
		{downRep, StateDown, "[]"},
		{func(at time.Time) *probe.Report { return leafRep(at, "warning", "A", far) }, StateUp, "[status_changed/warning]"},
		{func(at time.Time) *probe.Report { return leafRep(at, "ok", "A", far) }, StateUp, "[status_changed/info]"},
	}
	for i, s := range steps {
		evs := m.step(s.rep(m.at.Add(time.Hour)))
		if m.rec.State != s.state || fmt.Sprint(evs) != s.evs {
			t.Fatalf("step %d: state %s events %v, want %s %s", i, m.rec.State, evs, s.state, s.evs)
		}
	}
	// Pending stays pending through fewer failures than the threshold.
	m = newMachine()
	m.step(downRep(now0))
	if m.rec.State != StatePending || m.rec.ConsecutiveFailures != 1 {
		t.Errorf("after one failure from pending: %s/%d", m.rec.State, m.rec.ConsecutiveFailures)
	}
}

func TestStagesOncePerCertificate(t *testing.T) {
	m := newMachine()
	na := now0.Add(5*24*time.Hour + 2*time.Hour) // first probe at now0+1h: 5 days left
	// First probe already at stage 7d: only 7d fires (not 30d and 14d).
	if evs := m.step(leafRep(now0.Add(time.Hour), "critical", "A", na)); fmt.Sprint(evs) != "[status_changed/warning stage_crossed/critical]" {
		t.Fatalf("first probe events %v", evs)
	}
	for i := 0; i < 3; i++ {
		if evs := m.step(leafRep(m.at.Add(time.Hour), "critical", "A", na)); len(evs) != 0 {
			t.Fatalf("repeat probe fired %v", evs)
		}
	}
	// Crossing 1d.
	m.at = na.Add(-20 * time.Hour)
	if evs := m.step(leafRep(m.at.Add(time.Hour), "critical", "A", na)); fmt.Sprint(evs) != "[stage_crossed/critical]" {
		t.Fatalf("1d crossing events %v", evs)
	}
	// Expired (status down: not trusted; failures counting starts).
	m.at = na
	if evs := m.step(leafRep(m.at.Add(time.Hour), "down", "A", na)); fmt.Sprint(evs) != "[status_changed/warning stage_crossed/critical]" {
		t.Fatalf("expiry events %v", evs)
	}
	if got := m.alerts["A"].Stages; fmt.Sprint(got) != "[7d 1d expired]" {
		t.Errorf("alert stages %v", got)
	}
	// Rotation to a cert 20 days out: rotated, status change, and the new
	// cert's own 30d stage.
	nb := m.at.Add(20*24*time.Hour + 3*time.Hour)
	if evs := m.step(leafRep(m.at.Add(time.Hour), "ok", "B", nb)); fmt.Sprint(evs) != "[rotated/info status_changed/info stage_crossed/warning]" {
		t.Fatalf("rotation events %v", evs)
	}
	// Rotating back to A (two backends) does not re-fire A's stages.
	if evs := m.step(leafRep(m.at.Add(time.Hour), "down", "A", na)); fmt.Sprint(evs) != "[rotated/info status_changed/warning]" {
		t.Fatalf("rotation back events %v", evs)
	}
	if m.rec.FiredStage != "expired" {
		t.Errorf("fired stage after rotating back = %q", m.rec.FiredStage)
	}
}

func TestStageOf(t *testing.T) {
	at := now0
	for _, c := range []struct {
		left  time.Duration
		th    []probe.Threshold
		stage probe.Stage
	}{
		{31 * 24 * time.Hour, probe.DefaultThresholds, probe.StageNone},
		{30*24*time.Hour + time.Hour, probe.DefaultThresholds, "30d"}, // 30 whole days
		{14 * 24 * time.Hour, probe.DefaultThresholds, "14d"},
		{8 * 24 * time.Hour, probe.DefaultThresholds, "14d"},
		{7*24*time.Hour + time.Minute, probe.DefaultThresholds, "7d"},
		{time.Hour, probe.DefaultThresholds, "1d"},
		// not_after is inclusive (RFC 5280, crypto/x509): at that very
		// instant the certificate is still valid, as the Report says.
		{0, probe.DefaultThresholds, "1d"},
		{-time.Nanosecond, probe.DefaultThresholds, "expired"},
		{-time.Hour, probe.DefaultThresholds, "expired"},
		{50 * 24 * time.Hour, probe.DayThresholds(60, 3), "60d"},
		{50 * 24 * time.Hour, nil, probe.StageNone}, // nil: the defaults
		{20 * time.Hour, []probe.Threshold{probe.Hours(36), probe.Percent(10)}, "36h"},
	} {
		s := stageOf(probe.Validity{NotBefore: at.AddDate(-1, 0, 0), NotAfter: at.Add(c.left)}, at, c.th)
		if s != c.stage {
			t.Errorf("stageOf(%v, %v) = %q, want %q", c.left, c.th, s, c.stage)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	for _, ok := range []string{"", "@every 1s", "@every 6h", "@hourly", "@daily", "*/5 * * * *", "0 9 * * 1-5", "30 */5 * * * *", "CRON_TZ=Europe/Berlin 0 9 * * *"} {
		if _, err := ParseSchedule(ok); err != nil {
			t.Errorf("ParseSchedule(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"@every 500ms", "@every 1.5s", "@every", "@every -1s", "every 5m", "61 * * * *", "* * *", "0 0 30 2 *", "@fortnightly"} {
		_, err := ParseSchedule(bad)
		var fe *probe.FieldError
		if !errors.As(err, &fe) || fe.Field != "schedule" {
			t.Errorf("ParseSchedule(%q) = %v, want a schedule FieldError", bad, err)
		}
	}
	s, _ := ParseSchedule("")
	if s.Spec != DefaultSchedule || s.Every != 6*time.Hour {
		t.Errorf("default schedule = %+v", s)
	}
}

func TestNormalizeThresholds(t *testing.T) {
	for _, c := range []struct {
		in   []any
		want string
	}{
		{[]any{7, 30, 7, 1, 14}, "[30d 14d 7d 1d]"},
		{nil, "[30d 14d 7d 1d]"},
		{[]any{"20%", 30.0, "36h", "7d", "30", json.Number("14"), " 12H ", int64(1)}, "[30d 14d 7d 1d 36h 12h 20%]"},
		{[]any{"365d", "8760h", "100%", "1%"}, "[365d 8760h 100% 1%]"},
	} {
		got, err := NormalizeThresholds(c.in)
		if err != nil || fmt.Sprint(got) != c.want {
			t.Errorf("NormalizeThresholds(%v) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range [][]any{{0}, {-1}, {366}, {30, 400}, {30.5}, {"0h"}, {"8761h"}, {"101%"}, {"36x"}, {"+5"}, {"1.5d"},
		{"h"}, {""}, {true}, {nil}, make([]any, MaxThresholds+1)} {
		_, err := NormalizeThresholds(bad)
		var fe *probe.FieldError
		if !errors.As(err, &fe) || fe.Field != "thresholds_days" {
			t.Errorf("NormalizeThresholds(%v) = %v", bad, err)
		}
	}
}

// 10,000 watches on one schedule must not fire in the same second.
func TestJitterSpreads(t *testing.T) {
	for _, spec := range []string{"@every 1h", "0 * * * *"} {
		s, err := ParseSchedule(spec)
		if err != nil {
			t.Fatal(err)
		}
		perSecond := map[int64]int{}
		max := 0
		for i := 0; i < 10000; i++ {
			id := fmt.Sprintf("w_%016x", uint64(i)*0x9e3779b97f4a7c15)
			next := nextFire(s, idHash(id), now0, time.Time{}, 0, 5*time.Minute)
			if !next.After(now0) || next.Sub(now0) > time.Hour+5*time.Minute {
				t.Fatalf("%s: next %v out of range", spec, next)
			}
			perSecond[next.Unix()]++
			if perSecond[next.Unix()] > max {
				max = perSecond[next.Unix()]
			}
			// Deterministic: same id, same time.
			if again := nextFire(s, idHash(id), now0, time.Time{}, 0, 5*time.Minute); !again.Equal(next) {
				t.Fatalf("nextFire not deterministic")
			}
		}
		// Uniform over 3600 s (or 300 s for the cron spec) gives ~3 (~33)
		// per second; anything near 10,000 would be a herd.
		if max > 100 {
			t.Errorf("%s: %d watches fire in one second", spec, max)
		}
	}
	// The floor slows an @every below it.
	s, _ := ParseSchedule("@every 1s")
	if d := nextFire(s, 12345, now0, now0, time.Minute, time.Minute).Sub(now0); d <= 0 || d > time.Minute {
		t.Errorf("floored next in %v", d)
	}
	a := nextFire(s, 12345, now0, now0, time.Minute, time.Minute)
	if b := nextFire(s, 12345, a, a, time.Minute, time.Minute); b.Sub(a) != time.Minute {
		t.Errorf("floored interval %v, want 1m", b.Sub(a))
	}
}
