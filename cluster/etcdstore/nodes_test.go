package etcdstore_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/cluster/etcdstore"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// probes counts the probes of each host by each node.
type probes struct {
	mu    sync.Mutex
	calls map[string]map[string][]time.Time // host -> node -> times
}

func newProbes() *probes { return &probes{calls: map[string]map[string][]time.Time{}} }

// by is the canned probe of node, counted.
func (p *probes) by(node string) watch.Config {
	fn := func(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
		p.mu.Lock()
		if p.calls[t.Host] == nil {
			p.calls[t.Host] = map[string][]time.Time{}
		}
		p.calls[t.Host][node] = append(p.calls[t.Host][node], time.Now())
		p.mu.Unlock()
		return watchtest.Probe(ctx, t, o)
	}
	return watch.Config{Prober: &watch.Prober{Probe: fn}}
}

// since returns, per host, the nodes that probed it after t.
func (p *probes) since(t time.Time) map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]string{}
	for host, byNode := range p.calls {
		for node, ts := range byNode {
			if len(ts) > 0 && ts[len(ts)-1].After(t) {
				out[host] = append(out[host], node)
			}
		}
		sort.Strings(out[host])
	}
	return out
}

func hosts(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d.test", prefix, i)
	}
	return out
}

func addAll(t *testing.T, svc watch.Service, hs []string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, h := range hs {
		w, err := svc.Add(ctxT(t), watch.Spec{Target: h, Schedule: "@every 1s"})
		if err != nil {
			t.Fatalf("Add %s: %v", h, err)
		}
		ids[h] = w.ID
	}
	return ids
}

// Two nodes list the same watches, each watch is probed by one node only,
// its record names that node, and a watch added on one node reaches the
// other's subscribers.
func TestNodesShareWatches(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) { nodesShareWatches(t, srv.start(t)) })
	}
}

func nodesShareWatches(t *testing.T, srv *etcdlab.Server) {
	cli, k := srv.Client(t), testKeys(t)
	p := newProbes()
	a := join(t, cli, k, "a", p.by("a"), nil)
	b := join(t, srv.Client(t), k, "b", p.by("b"), nil)
	waitFor(t, wait, "two nodes share the shards", func() bool {
		return len(a.Node().Claims())+len(b.Node().Claims()) == a.Node().Shards() && len(a.Node().Claims()) > 0 && len(b.Node().Claims()) > 0
	})
	recB := &watchtest.Recorder{}
	b.Subscribe(recB)
	hs := hosts(8, "w")
	ids := addAll(t, a, hs)
	waitFor(t, wait, "b lists the watches a added", func() bool {
		p, err := b.List(ctxT(t), "", 0)
		return err == nil && len(p.Watches) == len(hs)
	})
	waitFor(t, wait, "b's subscribers hear every addition", func() bool { return recB.Count(watch.EventWatchAdded, "") == len(hs) })

	start := time.Now().Add(time.Second)
	time.Sleep(3 * time.Second)
	for host, nodes := range p.since(start) {
		if len(nodes) != 1 {
			t.Errorf("%s probed by %v since the nodes settled, want one node", host, nodes)
		}
		owner := "a"
		if b.Store().Owns(ids[host]) {
			owner = "b"
		}
		if nodes[0] != owner {
			t.Errorf("%s probed by %s, owned by %s", host, nodes[0], owner)
		}
		w, err := b.Get(ctxT(t), ids[host])
		if err != nil || w.ProbedBy != owner {
			t.Errorf("%s: probed_by %q (%v), want %s", host, w.ProbedBy, err, owner)
		}
	}
	if n := len(p.since(start)); n != len(hs) {
		t.Errorf("%d of %d watches probed", n, len(hs))
	}
	// etcd confirms the copies current (progress notices) when nothing
	// changes too.
	for _, id := range ids {
		if _, err := a.Remove(ctxT(t), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	if l, err := b.Expiring(ctxT(t), nil, "", 0); err != nil || l.StaleSince != nil {
		t.Errorf("an idle, connected node says its copy is stale: %v %v", l.StaleSince, err)
	}
}

// The same target added on two nodes at once is one watch.
func TestConcurrentAddOneWatch(t *testing.T) {
	cli, k := etcdlab.Shared().Client(t), testKeys(t)
	a := join(t, cli, k, "a", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe}}, nil)
	b := join(t, etcdlab.Shared().Client(t), k, "b", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe}}, nil)
	for i := 0; i < 5; i++ {
		host := fmt.Sprintf("same%d.test", i)
		var wg sync.WaitGroup
		got := make([]watch.Watch, 2)
		errs := make([]error, 2)
		for j, svc := range []*etcdstore.Service{a, b} {
			wg.Go(func() { got[j], errs[j] = svc.Add(ctxT(t), watch.Spec{Target: host}) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("Add %s: %v, %v", host, errs[0], errs[1])
		}
		if got[0].ID != got[1].ID {
			t.Errorf("%s: two watches %s and %s", host, got[0].ID, got[1].ID)
		}
	}
	waitFor(t, wait, "both nodes list 5 watches", func() bool {
		wa, _ := a.List(ctxT(t), "", 0)
		wb, _ := b.List(ctxT(t), "", 0)
		return len(wa.Watches) == 5 && len(wb.Watches) == 5
	})
}

// feedCount counts the feed entries of kind per watch.
func feedCount(t *testing.T, svc watch.Service, kind string) map[string]int {
	t.Helper()
	out := map[string]int{}
	f, err := svc.Alerts(ctxT(t), "", watch.MaxAlertsLimit)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Alerts {
		if e.Kind == kind {
			out[e.WatchID]++
		}
	}
	return out
}

// A node cut off from etcd stops probing within its lease; the other takes
// its watches over, probes them again at once, and fires no stage alert a
// second time. The cut-off node answers reads from its copy, marked stale,
// and comes back when etcd does.
func TestTakeoverAfterPartition(t *testing.T) {
	srv := etcdlab.Shared()
	proxy := etcdlab.NewProxy(t, srv.Endpoint)
	cli, k := srv.Client(t), testKeys(t)
	p := newProbes()
	a := join(t, cli, k, "a", p.by("a"), nil)
	b := join(t, etcdlab.NewClient(t, proxy.Endpoint), k, "b", p.by("b"), nil)
	waitFor(t, wait, "two nodes share the shards", func() bool {
		return len(a.Node().Claims())+len(b.Node().Claims()) == a.Node().Shards() && len(b.Node().Claims()) > 0
	})
	hs := hosts(10, "soon")
	ids := addAll(t, a, hs)
	waitFor(t, wait, "every watch is probed", func() bool { return len(p.since(time.Now().Add(-500*time.Millisecond))) == len(hs) })
	waitFor(t, wait, "b lists every watch", func() bool { l, err := b.List(ctxT(t), "", 0); return err == nil && len(l.Watches) == len(hs) })

	proxy.Partition()
	cut := time.Now()
	waitFor(t, wait, "b gives its shards up", func() bool { return len(b.Node().Claims()) == 0 })
	if d := time.Since(cut); d > testTTL {
		t.Errorf("b stopped after %s, want within its lease (%s)", d, testTTL)
	}
	waitFor(t, wait, "a holds every shard", func() bool { return len(a.Node().Claims()) == a.Node().Shards() })
	after := time.Now().Add(500 * time.Millisecond)
	waitFor(t, 10*time.Second, "a probes every watch", func() bool { return len(p.since(after)) == len(hs) })
	for host, nodes := range p.since(after) {
		if fmt.Sprint(nodes) != "[a]" {
			t.Errorf("%s probed by %v after the takeover", host, nodes)
		}
	}
	waitFor(t, wait, "b's copy says it is stale", func() bool {
		p, err := b.List(ctxT(t), "", 0)
		l := p.Watches
		return err == nil && len(l) == len(hs) && l[0].StaleSince != nil
	})
	for id, n := range feedCount(t, a, watch.EventStageCrossed) {
		if n != 1 {
			t.Errorf("watch %s: %d stage alerts in the feed, want 1", id, n)
		}
	}
	if n := len(feedCount(t, a, watch.EventStageCrossed)); n != len(ids) {
		t.Errorf("%d watches with a stage alert, want %d", n, len(ids))
	}
	proxy.Heal()
	waitFor(t, wait, "b is back and current", func() bool {
		l, err := b.Expiring(ctxT(t), nil, "", 0)
		return err == nil && l.StaleSince == nil && len(b.Node().Claims()) > 0
	})
}

// A watch re-added again and again on a node that does not probe it (and
// from the command line), while its owner probes it every second, keeps one
// record of its stage alert: each write is based on the watch as it was,
// and the one that loses the race decides again on what won.
func TestReAddWhileProbedElsewhere(t *testing.T) {
	srv := etcdlab.Shared()
	k := testKeys(t)
	a := join(t, srv.Client(t), k, "a", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe}}, nil)
	owning(t, a)
	cli := join(t, srv.Client(t), k, "", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe}}, nil)
	spec := watch.Spec{Target: "soon-race.test", Schedule: "@every 1s"}
	w, err := a.Add(ctxT(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, svc := range []watch.Service{a, cli} {
		wg.Go(func() {
			for i := 0; i < 15; i++ {
				if got, err := svc.Add(ctxT(t), spec); err != nil || got.ID != w.ID {
					t.Errorf("re-Add %d: %s %v", i, got.ID, err)
				}
				time.Sleep(70 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if n := feedCount(t, a, watch.EventStageCrossed)[w.ID]; n != 1 {
		t.Errorf("%d stage alerts recorded, want 1", n)
	}
	if n := feedCount(t, a, watch.EventWatchAdded)[w.ID]; n != 1 {
		t.Errorf("added %d times, want 1", n)
	}
	h, err := a.History(ctxT(t), watch.HistoryQuery{ID: w.ID, Limit: watch.MaxHistoryLimit})
	if err != nil || len(h.Samples) < 31 {
		t.Errorf("history: %d samples (want the 31 Adds and the scheduled probes), %v", len(h.Samples), err)
	}
}
