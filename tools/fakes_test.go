package tools

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// fakeProbe returns a canned Report per host; hosts starting with "down"
// are unreachable.
func fakeProbe(_ context.Context, t probe.Target, _ probe.Options) (probe.Report, error) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	r := probe.Report{
		Target:      probe.TargetInfo{Host: t.Host, Port: t.Port, SNI: t.SNI, IP: t.IP},
		CheckedAt:   now,
		Status:      probe.StatusOK,
		Reachable:   true,
		Trusted:     true,
		ExpiryStage: "none",
		TLS:         &probe.TLSInfo{Version: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256"},
		Leaf: &probe.CertInfo{Subject: "CN=" + t.Host, Issuer: "CN=Test CA", SANs: []string{t.Host},
			NotBefore: now.AddDate(0, 0, -10), NotAfter: now.AddDate(0, 0, 41), DaysRemaining: 41,
			Serial: "01", SHA256: "ab", Key: "ECDSA P-256", SignatureAlgorithm: "ECDSA-SHA256"},
		Chain:  &probe.ChainInfo{Served: 2, Complete: true, VerifiedPath: []string{"a", "b", "c"}},
		Timing: probe.Timing{Total: 1},
	}
	if strings.HasPrefix(t.Host, "down") {
		r.Reachable, r.Trusted, r.Status = false, false, probe.StatusDown
		r.TLS, r.Leaf, r.Chain = nil, nil, nil
		r.Findings = []probe.Finding{probe.NewFinding(probe.CodeConnectionRefused, "connection refused")}
	}
	if strings.HasPrefix(t.Host, "expired") {
		r.Trusted, r.Status, r.ExpiryStage = false, probe.StatusDown, "expired"
		r.Leaf.NotAfter, r.Leaf.DaysRemaining = now.AddDate(0, 0, -3), -3
		r.Findings = []probe.Finding{probe.NewFinding(probe.CodeExpired, "certificate expired 3 days ago")}
	}
	return r, nil
}

// fakeWatch is an in-memory watch.Service.
type fakeWatch struct {
	mu        sync.Mutex
	watches   map[string]watch.Watch
	notifiers map[int]watch.Notifier
	next      int
}

var _ watch.Service = (*fakeWatch)(nil)

func newFakeWatch() *fakeWatch {
	return &fakeWatch{watches: map[string]watch.Watch{}, notifiers: map[int]watch.Notifier{}}
}

func (f *fakeWatch) Add(ctx context.Context, spec watch.Spec) (watch.Watch, error) {
	if _, err := watch.ParseSchedule(spec.Schedule); err != nil {
		return watch.Watch{}, err
	}
	rep, _ := fakeProbe(ctx, spec.Target, probe.Options{})
	f.mu.Lock()
	id := "w_" + spec.Target.Host
	w := watch.Watch{ID: id, Target: rep.Target, Schedule: spec.Schedule, ThresholdsDays: spec.Thresholds,
		State: watch.StateUp, LastReport: &rep, LastCheckedAt: &rep.CheckedAt, CreatedAt: rep.CheckedAt, FailureThreshold: 3}
	_, existed := f.watches[id]
	f.watches[id] = w
	ns := f.notifierList()
	f.mu.Unlock()
	if !existed {
		for _, n := range ns {
			n.ListChanged()
		}
	}
	return w, nil
}

func (f *fakeWatch) notifierList() []watch.Notifier {
	var ns []watch.Notifier
	for _, n := range f.notifiers {
		ns = append(ns, n)
	}
	return ns
}

func (f *fakeWatch) Remove(_ context.Context, id, target string) (watch.Watch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" {
		t, err := probe.ParseTarget(target, "", "", 0)
		if err != nil {
			return watch.Watch{}, err
		}
		id = "w_" + t.Host
	}
	w, ok := f.watches[id]
	if !ok {
		return watch.Watch{}, watch.ErrNotFound
	}
	delete(f.watches, id)
	return w, nil
}

func (f *fakeWatch) Get(_ context.Context, id string) (watch.Watch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.watches[id]
	if !ok {
		return watch.Watch{}, fmt.Errorf("%w: %s", watch.ErrNotFound, id)
	}
	return w, nil
}

func (f *fakeWatch) List(context.Context) ([]watch.Watch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []watch.Watch
	for _, w := range f.watches {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeWatch) Expiring(ctx context.Context, days int) ([]watch.Watch, error) {
	ws, _ := f.List(ctx)
	var out []watch.Watch
	for _, w := range ws {
		if w.LastReport != nil && w.LastReport.Leaf != nil && w.LastReport.Leaf.DaysRemaining <= days {
			out = append(out, w)
		}
	}
	return out, nil
}

func (f *fakeWatch) History(_ context.Context, id string, limit int) ([]probe.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.watches[id]
	if !ok {
		return nil, watch.ErrNotFound
	}
	return []probe.Report{*w.LastReport}, nil
}

func (f *fakeWatch) Subscribe(n watch.Notifier) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	k := f.next
	f.notifiers[k] = n
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.notifiers, k)
	}
}

// fire sends an event for watch id to every notifier.
func (f *fakeWatch) fire(id, kind, level string) {
	f.mu.Lock()
	w := f.watches[id]
	ns := f.notifierList()
	f.mu.Unlock()
	for _, n := range ns {
		n.WatchChanged(watch.Event{Kind: kind, Level: level, Message: kind + " " + id, Watch: w})
	}
}

// fakeInspect wraps fakeProbe's Report in a ChainReport.
func fakeInspect(ctx context.Context, t probe.Target, opts probe.Options) (probe.ChainReport, error) {
	r, err := fakeProbe(ctx, t, opts)
	if err != nil {
		return probe.ChainReport{}, err
	}
	cr := probe.ChainReport{Report: r}
	if r.Leaf != nil {
		cr.Certificates = []probe.CertInfo{*r.Leaf}
	}
	return cr, nil
}

// fakeMCPCheck validates like mcpcheck.Run would (through probe.ParseTarget)
// and answers a live MCP server without any network.
func fakeMCPCheck(ctx context.Context, rawURL string, opts mcpcheck.Options) (mcpcheck.Result, error) {
	t, err := probe.ParseTarget(rawURL, opts.IP, opts.SNI, opts.TimeoutMS)
	if err != nil {
		return mcpcheck.Result{}, err
	}
	rep, _ := fakeProbe(ctx, t, opts.Probe)
	n := 3
	return mcpcheck.Result{URL: rawURL, Status: rep.Status, Findings: rep.Findings, IsMCP: true,
		ProtocolVersion: "2025-11-25", ServerName: "fake", ToolsListed: &n, LatencyMS: 1, TLS: rep}, nil
}
