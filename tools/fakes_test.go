package tools

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// fakeProbe answers without the network, by host (see watchtest.Probe):
// "down..." is refused, "expired..." expired 3 days ago, the rest is
// healthy for 41 days.
var fakeProbe watch.ProbeFunc = watchtest.Probe

// fakeWatch is the real watch engine on a bbolt file in a temporary
// directory, probing with fakeProbe on a clock pinned at the fake probe's
// time; fire injects a Change as if the watcher had committed one. It
// passes the watch.Service conformance suite (TestFakeWatchConformance).
type fakeWatch struct {
	*watch.Engine
	mu        sync.Mutex
	notifiers map[int]watch.Notifier
	next      int
}

var _ watch.Service = (*fakeWatch)(nil)

func newFakeWatch(t testing.TB) *fakeWatch { return newFakeWatchWith(t, fakeProbe) }

// watchServer is a Server on a real watch engine with fake probes.
func watchServer(t *testing.T) (*fakeWatch, *Server) {
	t.Helper()
	fw := newFakeWatch(t)
	srv := NewServer(Deps{Watch: fw, Probe: fakeProbe}, ServerOptions{})
	t.Cleanup(srv.Close)
	return fw, srv
}

func newFakeWatchWith(t testing.TB, probeFn watch.ProbeFunc) *fakeWatch {
	return newFakeWatchConfig(t, watch.Config{Prober: &watch.Prober{Probe: probeFn}})
}

// newFakeWatchConfig is newFakeWatch with cfg (its clock and scheduler are
// the fake's).
func newFakeWatchConfig(t testing.TB, cfg watch.Config) *fakeWatch {
	db, err := store.Open(filepath.Join(t.TempDir(), "tlswatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Prober == nil {
		cfg.Prober = &watch.Prober{Probe: fakeProbe}
	}
	if cfg.Prober.MCP == nil {
		cfg.Prober.MCP = watchtest.MCP
	}
	cfg.Clock = watchtest.NewClock(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	cfg.NoScheduler = true
	eng, err := watch.NewEngine(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eng.Close()
		db.Close()
	})
	return &fakeWatch{Engine: eng, notifiers: map[int]watch.Notifier{}}
}

// Subscribe registers n with the engine and for fire.
func (f *fakeWatch) Subscribe(n watch.Notifier) func() {
	cancel := f.Engine.Subscribe(n)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	k := f.next
	f.notifiers[k] = n
	return func() {
		cancel()
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.notifiers, k)
	}
}

// id is the id of the watch of host.
func (f *fakeWatch) id(host string) string {
	id := "w_none"
	_ = watch.EachPage(context.Background(), f, watch.MaxPageLimit, func(ws []watch.Watch) error {
		for _, w := range ws {
			if w.Target.Host == host {
				id = w.ID
			}
		}
		return nil
	})
	return id
}

// fire tells every notifier of an event of the watch of host.
func (f *fakeWatch) fire(host, kind, level string) {
	f.fireChange(host, [2]string{kind, level})
}

// fireChange tells every notifier of one Change of the watch of host with
// several events (kind, level pairs), as one probe commits them.
func (f *fakeWatch) fireChange(host string, events ...[2]string) {
	w, _ := f.Get(context.Background(), f.id(host))
	c := watch.Change{Watch: w}
	for _, e := range events {
		c.Events = append(c.Events, watch.Event{Kind: e[0], Level: e[1], Message: e[0] + " " + host})
	}
	f.mu.Lock()
	ns := make([]watch.Notifier, 0, len(f.notifiers))
	for _, n := range f.notifiers {
		ns = append(ns, n)
	}
	f.mu.Unlock()
	for _, n := range ns {
		n.Changed(c)
	}
}

func TestFakeWatchConformance(t *testing.T) {
	watchtest.Conformance(t, func(t *testing.T) watch.Service { return newFakeWatchWith(t, watchtest.Probe) })
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
