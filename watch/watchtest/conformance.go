package watchtest

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Open returns a fresh, empty watch.Service whose probes are Probe's
// answers, with MCP's as their MCP level. The service must be closed by
// t.Cleanup.
type Open func(t *testing.T) watch.Service

// Conformance runs the watch.Service contract against services from open:
// defaults, idempotence, validation (a *probe.FieldError naming the field),
// ErrNotFound, the expiring window, history, the alert feed and one Change
// per committed write. The real service and every fake that other
// packages' tests use must pass it.
func Conformance(t *testing.T, open Open) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, watch.Service)
	}{
		{"AddDefaults", addDefaults},
		{"AddIdempotent", addIdempotent},
		{"AddCarriesConfiguration", addCarriesConfiguration},
		{"BadInput", badInput},
		{"GetRemove", getRemove},
		{"Expiring", expiring},
		{"Pages", pages},
		{"History", history},
		{"AlertFeed", alertFeed},
		{"Subscribe", subscribe},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAdd(t *testing.T, svc watch.Service, spec watch.Spec) watch.Watch {
	t.Helper()
	w, err := svc.Add(ctxOf(t), spec)
	if err != nil {
		t.Fatalf("Add(%+v): %v", spec, err)
	}
	return w
}

func addDefaults(t *testing.T, svc watch.Service) {
	w := mustAdd(t, svc, watch.Spec{Target: "a.test"})
	if len(w.ID) < 3 || w.ID[:2] != "w_" {
		t.Errorf("id %q", w.ID)
	}
	if w.Target.Host != "a.test" || w.Target.Port != 443 || w.Target.SNI != "a.test" {
		t.Errorf("target %+v", w.Target)
	}
	if w.Schedule != watch.DefaultSchedule || !slices.Equal(w.ThresholdsDays, probe.DefaultThresholds) ||
		w.FailureThreshold != watch.DefaultFailureThreshold || w.TimeoutMS != int(probe.DefaultTimeout/time.Millisecond) {
		t.Errorf("defaults: schedule %q thresholds %v failure threshold %d timeout %d", w.Schedule, w.ThresholdsDays, w.FailureThreshold, w.TimeoutMS)
	}
	if w.State != watch.StateUp || w.LastReport == nil || w.LastReport.Status != probe.StatusOK || w.LastCheckedAt == nil {
		t.Errorf("after the first probe: state %q report %+v", w.State, w.LastReport)
	}
	if g, err := svc.Get(ctxOf(t), w.ID); err != nil || g.ID != w.ID || g.LastReport == nil {
		t.Errorf("Get: %+v %v", g, err)
	}
}

func addIdempotent(t *testing.T, svc watch.Service) {
	a := mustAdd(t, svc, watch.Spec{Target: "a.test"})
	b := mustAdd(t, svc, watch.Spec{Target: "https://A.test.:443/mcp", Schedule: "@every 1h", Thresholds: []any{7, "36h", 60, "7d", "20%"}})
	want := []probe.Threshold{probe.Days(60), probe.Days(7), probe.Hours(36), probe.Percent(20)}
	if b.ID != a.ID || b.Schedule != "@every 1h" || !slices.Equal(b.ThresholdsDays, want) || !b.CreatedAt.Equal(a.CreatedAt) {
		t.Errorf("re-Add of the same target: %+v (first %s)", b, a.ID)
	}
	c := mustAdd(t, svc, watch.Spec{Target: "a.test", SNI: "other.test"})
	if c.ID == a.ID || c.Target.SNI != "other.test" {
		t.Errorf("another sni shares the watch: %+v", c)
	}
	p, err := svc.List(ctxOf(t), "", 0)
	if ws := p.Watches; err != nil || len(ws) != 2 || ws[0].ID > ws[1].ID || p.NextCursor != "" {
		t.Errorf("List: %d watches (want 2, id order, one page), %v", len(ws), err)
	}
}

func addCarriesConfiguration(t *testing.T, svc watch.Service) {
	p := testlab.NewPKI(t)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Cert.Raw}))
	w := mustAdd(t, svc, watch.Spec{Target: "a.test:8443", IP: "127.0.0.1", TimeoutMS: 3000, CAPEM: caPEM,
		ClientCert: "ops", MCP: true, TokenName: "prod", CreatedBy: "alice"})
	check := func(what string, w watch.Watch) {
		if len(w.CARoots) != 1 || w.CARoots[0].Subject != p.Root.Cert.Subject.String() || len(w.CARoots[0].SHA256) != 64 {
			t.Errorf("%s: ca_roots %+v", what, w.CARoots)
		}
		if w.ClientCert != "ops" || !w.MCPLevel || w.TokenName != "prod" || w.CreatedBy != "alice" || w.TimeoutMS != 3000 || w.Target.IP != "127.0.0.1" {
			t.Errorf("%s: configuration not kept: %+v", what, w)
		}
		// The MCP level of its first probe (MCP, the canned MCP level, answers).
		if m := w.MCP; m == nil || m.ToolCount != 2 || m.ToolsHash == "" || m.Server.Name == "" || m.Tools != nil {
			t.Errorf("%s: mcp %+v, want the server's DESIGN fields without the tool list", what, m)
		}
		if s := w.MCPStats; s == nil || s.Probes != 1 || s.Uptime != 1 || s.LatencyMSP50 == nil {
			t.Errorf("%s: mcp_stats %+v", what, s)
		}
		if r := w.LastReport; r == nil || r.MCP == nil || r.MCP.ToolsHash != w.MCP.ToolsHash {
			t.Errorf("%s: the Report's mcp level is missing", what)
		}
	}
	check("Add", w)
	g, err := svc.Get(ctxOf(t), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("Get", g)
}

func badInput(t *testing.T, svc watch.Service) {
	ctx := ctxOf(t)
	for _, c := range []struct {
		field string
		spec  watch.Spec
	}{
		{"target", watch.Spec{}},
		{"target", watch.Spec{Target: "http://a.test"}},
		{"ip", watch.Spec{Target: "a.test", IP: "nope"}},
		{"timeout_ms", watch.Spec{Target: "a.test", TimeoutMS: 70000}},
		{"schedule", watch.Spec{Target: "a.test", Schedule: "every day"}},
		{"thresholds_days", watch.Spec{Target: "a.test", Thresholds: []any{0}}},
		{"thresholds_days", watch.Spec{Target: "a.test", Thresholds: []any{"36x"}}},
		{"thresholds_days", watch.Spec{Target: "a.test", Thresholds: make([]any, watch.MaxThresholds+1)}},
		{"failure_threshold", watch.Spec{Target: "a.test", FailureThreshold: -1}},
		{"ca_pem", watch.Spec{Target: "a.test", CAPEM: "not a certificate"}},
		{"client_cert", watch.Spec{Target: "a.test", ClientCert: "../etc/key"}},
		{"mcp", watch.Spec{Target: "smtp://a.test", MCP: true}},
		{"token_name", watch.Spec{Target: "a.test", TokenName: "prod"}},
	} {
		var fe *probe.FieldError
		if _, err := svc.Add(ctx, c.spec); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("Add(%+v): %v, want a field error on %s", c.spec, err, c.field)
		}
	}
	if p, err := svc.List(ctx, "", 0); err != nil || len(p.Watches) != 0 {
		t.Errorf("bad input stored %d watches (%v)", len(p.Watches), err)
	}
	for _, c := range []struct {
		field string
		call  func() error
	}{
		{"within_days", func() error { _, err := svc.Expiring(ctx, ptr(-1), "", 0); return err }},
		{"cursor", func() error { _, err := svc.List(ctx, "not-a-cursor", 0); return err }},
		{"cursor", func() error { _, err := svc.Expiring(ctx, nil, "not-a-cursor", 0); return err }},
		{"limit", func() error { _, err := svc.List(ctx, "", watch.MaxPageLimit+1); return err }},
		{"limit", func() error { _, err := svc.Expiring(ctx, nil, "", -1); return err }},
		{"limit", func() error {
			_, err := svc.History(ctx, watch.HistoryQuery{ID: "w_x", Limit: watch.MaxHistoryLimit + 1})
			return err
		}},
		{"id", func() error { _, err := svc.History(ctx, watch.HistoryQuery{}); return err }},
		{"resolution", func() error {
			_, err := svc.History(ctx, watch.HistoryQuery{ID: "w_x", Resolution: "weekly"})
			return err
		}},
		{"since", func() error {
			_, err := svc.History(ctx, watch.HistoryQuery{ID: "w_x", Since: "yesterday"})
			return err
		}},
		{"until", func() error {
			_, err := svc.History(ctx, watch.HistoryQuery{ID: "w_x", Since: "1h", Until: "2h"})
			return err
		}},
		{"after", func() error { _, err := svc.Alerts(ctx, "not-a-cursor", 0); return err }},
	} {
		var fe *probe.FieldError
		if err := c.call(); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("bad %s: %v, want a field error on it", c.field, err)
		}
	}
}

func ptr(n int) *int { return &n }

func getRemove(t *testing.T, svc watch.Service) {
	ctx := ctxOf(t)
	a := mustAdd(t, svc, watch.Spec{Target: "a.test"})
	b := mustAdd(t, svc, watch.Spec{Target: "b.test:8443"})
	if _, err := svc.Get(ctx, "w_nope"); !errors.Is(err, watch.ErrNotFound) {
		t.Errorf("Get unknown: %v", err)
	}
	var fe *probe.FieldError
	if _, err := svc.Remove(ctx, a.ID, "a.test"); !errors.As(err, &fe) || fe.Field != "id" {
		t.Errorf("Remove with id and target: %v", err)
	}
	if _, err := svc.Remove(ctx, "", ""); !errors.As(err, &fe) || fe.Field != "id" {
		t.Errorf("Remove with neither: %v", err)
	}
	if r, err := svc.Remove(ctx, a.ID, ""); err != nil || r.ID != a.ID {
		t.Errorf("Remove by id: %+v %v", r, err)
	}
	if _, err := svc.Remove(ctx, a.ID, ""); !errors.Is(err, watch.ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if r, err := svc.Remove(ctx, "", "https://b.test:8443/x"); err != nil || r.ID != b.ID {
		t.Errorf("Remove by target: %+v %v", r, err)
	}
	if _, err := svc.Remove(ctx, "", "c.test"); !errors.Is(err, watch.ErrNotFound) {
		t.Errorf("Remove of an unknown target: %v", err)
	}
	if p, _ := svc.List(ctx, "", 0); len(p.Watches) != 0 {
		t.Errorf("%d watches left", len(p.Watches))
	}
}

func expiring(t *testing.T, svc watch.Service) {
	ctx := ctxOf(t)
	for _, h := range []string{"healthy.test", "soon.test", "expired.test"} {
		mustAdd(t, svc, watch.Spec{Target: h})
	}
	mustAdd(t, svc, watch.Spec{Target: "down.test", FailureThreshold: 1})
	hosts := func(days *int) string {
		l, err := svc.Expiring(ctx, days, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		want := watch.DefaultExpiringDays
		if days != nil {
			want = *days
		}
		if l.WithinDays != want {
			t.Errorf("within_days %d, want %d", l.WithinDays, want)
		}
		var s []string
		for _, w := range l.Watches {
			s = append(s, w.Target.Host)
		}
		return fmt.Sprint(s)
	}
	for _, c := range []struct {
		days *int
		want string
	}{
		{nil, "[expired.test soon.test down.test]"},
		{ptr(0), "[expired.test down.test]"},
		{ptr(4), "[expired.test down.test]"},
		{ptr(5), "[expired.test soon.test down.test]"},
		{ptr(60), "[expired.test soon.test healthy.test down.test]"},
	} {
		if got := hosts(c.days); got != c.want {
			t.Errorf("Expiring(%v) = %s, want %s", c.days, got, c.want)
		}
	}
}

// pages: List and Expiring page by page give what one page gives, in the
// same order; a cursor of one list is refused by the other.
func pages(t *testing.T, svc watch.Service) {
	ctx := ctxOf(t)
	for _, h := range []string{"a.test", "b.test", "c.test", "soon.test", "expired.test", "down.test"} {
		mustAdd(t, svc, watch.Spec{Target: h, FailureThreshold: 1})
	}
	var all []string
	err := watch.EachPage(ctx, svc, 0, func(ws []watch.Watch) error {
		for _, w := range ws {
			all = append(all, w.ID)
		}
		return nil
	})
	if err != nil || len(all) != 6 {
		t.Fatalf("one page: %v %v", all, err)
	}
	var paged, pagesSeen []string
	err = watch.EachPage(ctx, svc, 4, func(ws []watch.Watch) error {
		pagesSeen = append(pagesSeen, fmt.Sprint(len(ws)))
		for _, w := range ws {
			paged = append(paged, w.ID)
		}
		return nil
	})
	if err != nil || !slices.Equal(paged, all) || fmt.Sprint(pagesSeen) != "[4 2]" {
		t.Errorf("pages of 4: %v %v (pages %v), want %v", paged, err, pagesSeen, all)
	}
	whole, err := svc.Expiring(ctx, ptr(60), "", 0)
	if err != nil || len(whole.Watches) != 6 || whole.NextCursor != "" {
		t.Fatalf("expiring in one page: %+v %v", whole, err)
	}
	first, err := svc.Expiring(ctx, ptr(60), "", 1)
	if err != nil || len(first.Watches) != 1 || first.Watches[0].Target.Host != "expired.test" || first.NextCursor == "" {
		t.Fatalf("first expiring page: %+v %v", first, err)
	}
	var hosts, want []string
	for _, w := range whole.Watches {
		want = append(want, w.Target.Host)
	}
	for l := first; ; {
		for _, w := range l.Watches {
			hosts = append(hosts, w.Target.Host)
		}
		if l.NextCursor == "" {
			break
		}
		if l, err = svc.Expiring(ctx, ptr(60), l.NextCursor, 1); err != nil || l.WithinDays != 60 {
			t.Fatalf("next expiring page: %+v %v", l, err)
		}
	}
	if !slices.Equal(hosts, want) || want[1] != "soon.test" || want[5] != "down.test" {
		t.Errorf("expiring page by page: %v, in one page: %v", hosts, want)
	}
	var fe *probe.FieldError
	if _, err := svc.List(ctx, first.NextCursor, 0); !errors.As(err, &fe) || fe.Field != "cursor" {
		t.Errorf("List with a cursor of Expiring: %v", err)
	}
}

func history(t *testing.T, svc watch.Service) {
	ctx := ctxOf(t)
	a := mustAdd(t, svc, watch.Spec{Target: "a.test"})
	mustAdd(t, svc, watch.Spec{Target: "a.test"})
	h, err := svc.History(ctx, watch.HistoryQuery{ID: a.ID})
	if err != nil || len(h.Samples) != 2 || h.Samples[0].At.Before(h.Samples[1].At) || h.Resolution != watch.ResolutionRaw || h.More {
		t.Fatalf("History: %d samples (want 2, newest first), resolution %q, more %v, %v", len(h.Samples), h.Resolution, h.More, err)
	}
	// The first probe's Report is stored (a change: there was none
	// before), and samples name the stored Report they matched.
	refs := map[string]bool{}
	for _, r := range h.Changes {
		refs[r.Ref] = true
	}
	if n := len(h.Changes); n == 0 || h.Changes[n-1].Kind != "change" || h.Changes[n-1].Report.CheckedAt.IsZero() || h.StateSince == nil {
		t.Errorf("History changes: %+v, state since %v; want the first probe's Report as a change", h.Changes, h.StateSince)
	}
	for _, s := range h.Samples {
		if !refs[s.Report] || s.Status == "" {
			t.Errorf("sample %+v names no Report of the answer", s)
		}
	}
	// Reports: every probe result as a full Report, newest first, at its
	// sample's time.
	if len(h.Reports) != len(h.Samples) {
		t.Fatalf("History reports: %d, want one per sample (%d)", len(h.Reports), len(h.Samples))
	}
	for i, r := range h.Reports {
		if s := h.Samples[i]; !r.CheckedAt.Equal(s.At) || r.Status != s.Status || r.Target.Host != "a.test" {
			t.Errorf("report %d: %s %s %s, want the sample's %s %s for a.test", i, r.CheckedAt, r.Status, r.Target.Host, s.At, s.Status)
		}
	}
	if h1, err := svc.History(ctx, watch.HistoryQuery{ID: a.ID, Limit: 1}); err != nil || len(h1.Reports) != 1 || !h1.Reports[0].CheckedAt.Equal(h.Samples[0].At) {
		t.Errorf("History limit 1: %d reports, %v; want the newest probe's", len(h1.Reports), err)
	}
	if h.Summary.Probes != 2 {
		t.Errorf("History summary: %+v, want 2 probes", h.Summary)
	}
	if h, _ := svc.History(ctx, watch.HistoryQuery{ID: a.ID, Limit: 1}); len(h.Samples) != 1 || !h.More {
		t.Errorf("History limit 1: %d samples, more %v", len(h.Samples), h.More)
	}
	for _, res := range []string{watch.ResolutionHour, watch.ResolutionDay} {
		h, err := svc.History(ctx, watch.HistoryQuery{ID: a.ID, Resolution: res, Since: "30d"})
		probes := 0
		for _, ag := range h.Aggregates {
			probes += ag.Probes
		}
		if err != nil || probes != 2 || len(h.Samples) != 0 || h.Since == nil {
			t.Errorf("History at %s: %d aggregates of %d probes, %d samples, since %v, %v", res, len(h.Aggregates), probes, len(h.Samples), h.Since, err)
		}
	}
	if _, err := svc.History(ctx, watch.HistoryQuery{ID: "w_nope"}); !errors.Is(err, watch.ErrNotFound) {
		t.Errorf("History of an unknown watch: %v", err)
	}
}

func alertFeed(t *testing.T, svc watch.Service) {
	ctx := ctxOf(t)
	a := mustAdd(t, svc, watch.Spec{Target: "a.test", CreatedBy: "alice"})
	f, err := svc.Alerts(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Alerts) == 0 || f.Alerts[0].Kind != watch.EventWatchAdded || f.Alerts[0].WatchID != a.ID ||
		f.Alerts[0].Subject != "alice" || f.Alerts[0].Target == "" || f.Next != f.Alerts[len(f.Alerts)-1].ID {
		t.Fatalf("feed after Add: %+v", f)
	}
	again, err := svc.Alerts(ctx, f.Next, 0)
	if err != nil || len(again.Alerts) != 0 || again.Next != f.Next {
		t.Errorf("nothing new: %+v %v", again, err)
	}
	if _, err := svc.Remove(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	after, err := svc.Alerts(ctx, f.Next, 1)
	if err != nil || len(after.Alerts) != 1 || after.Alerts[0].Kind != watch.EventWatchRemoved || after.Next == f.Next {
		t.Errorf("feed after Remove: %+v %v", after, err)
	}
}

// Recorder is a watch.Notifier that keeps the Changes it is told.
type Recorder struct {
	mu      sync.Mutex
	changes []watch.Change
}

// Changed records c.
func (r *Recorder) Changed(c watch.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

// Changes returns what was recorded so far.
func (r *Recorder) Changes() []watch.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

// Events returns the events of every Change so far.
func (r *Recorder) Events() []watch.Event {
	var out []watch.Event
	for _, c := range r.Changes() {
		out = append(out, c.Events...)
	}
	return out
}

// Count counts the events of kind whose message contains detail.
func (r *Recorder) Count(kind, detail string) int {
	n := 0
	for _, e := range r.Events() {
		if e.Kind == kind && strings.Contains(e.Message, detail) {
			n++
		}
	}
	return n
}

// Wait waits (10 s at most) until n Changes are recorded.
func (r *Recorder) Wait(t *testing.T, n int) []watch.Change {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.Changes()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes after 10 s, want %d: %+v", len(got), n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func subscribe(t *testing.T, svc watch.Service) {
	rec := &Recorder{}
	cancel := svc.Subscribe(rec)
	a := mustAdd(t, svc, watch.Spec{Target: "a.test"})
	got := rec.Wait(t, 1)
	// One Change per committed write: the new watch and its first status.
	if c := got[0]; c.Watch.ID != a.ID || !c.Has(watch.EventWatchAdded) || !c.Has(watch.EventStatusChanged) || !c.ListChanged() {
		t.Errorf("Change of an Add: %+v", c)
	}
	if _, err := svc.Remove(ctxOf(t), a.ID, ""); err != nil {
		t.Fatal(err)
	}
	got = rec.Wait(t, 2)
	if c := got[1]; c.Watch.ID != a.ID || !c.Has(watch.EventWatchRemoved) || len(c.Events) != 1 {
		t.Errorf("Change of a Remove: %+v", c)
	}
	cancel()
	mustAdd(t, svc, watch.Spec{Target: "b.test"})
	time.Sleep(50 * time.Millisecond)
	if n := len(rec.Wait(t, 2)); n != 2 {
		t.Errorf("%d changes after cancel, want 2", n)
	}
}
