package etcdstore_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/alert"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// webhook counts the alerts it accepts, by the node that sent them (its
// User-Agent).
type webhook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []delivered
}

type delivered struct {
	alert.Alert
	node string
	at   time.Time
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var a alert.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.got = append(w.got, delivered{Alert: a, node: r.UserAgent(), at: time.Now()})
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) deliveries() []delivered {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]delivered(nil), w.got...)
}

// stages counts distinct delivery ids of stage alerts per watch.
func (w *webhook) stages() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, d := range w.deliveries() {
		if d.Kind != watch.EventStageCrossed {
			continue
		}
		if out[d.WatchID] == nil {
			out[d.WatchID] = map[string]bool{}
		}
		out[d.WatchID][d.ID] = true
	}
	return out
}

func dispatcher(t *testing.T, url, node string) *alert.Dispatcher {
	t.Helper()
	cfg := alert.Config{Alerts: alert.Alerts{MinLevel: "warning", Channels: []alert.Channel{{Name: "hook", Type: alert.TypeWebhook, URL: url}},
		Retry: alert.Retry{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}}}
	d, err := alert.NewDispatcher(cfg, alert.Options{UserAgent: node, Logger: etcdlab.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Each alert queued with its cause is delivered once, by the node that
// holds the watch's shard; a node whose lease is revoked while it runs
// (cut off too, so it cannot come back) stops probing and delivers
// nothing more, and the other delivers what it had left and fires nothing
// twice.
func TestAlertsDeliveredOnceAcrossRevocation(t *testing.T) {
	srv := etcdlab.Shared()
	proxy := etcdlab.NewProxy(t, srv.Endpoint)
	cli, k := srv.Client(t), testKeys(t)
	hook := newWebhook(t)
	p := newProbes()
	a := join(t, cli, k, "a", p.by("a"), dispatcher(t, hook.srv.URL, "a"))
	b := join(t, etcdlab.NewClient(t, proxy.Endpoint), k, "b", p.by("b"), dispatcher(t, hook.srv.URL, "b"))
	waitFor(t, wait, "two nodes share the shards", func() bool {
		return len(a.Node().Claims())+len(b.Node().Claims()) == a.Node().Shards() && len(b.Node().Claims()) > 0
	})
	hs := hosts(12, "soon")
	ids := addAll(t, b, hs) // added on b: the first stage alerts are queued by b
	waitFor(t, wait, "every stage alert delivered", func() bool { return len(hook.stages()) == len(hs) })
	byNode := map[string]int{}
	for _, d := range hook.deliveries() {
		byNode[d.node]++
		owner := "a"
		if b.Store().Owns(d.WatchID) {
			owner = "b"
		}
		if d.node != owner {
			t.Errorf("alert of %s delivered by %s, its shard is %s's", d.WatchID, d.node, owner)
		}
	}

	proxy.Partition()
	lease := b.Node().Lease()
	if _, err := cli.Revoke(ctxT(t), lease); err != nil {
		t.Fatalf("revoke b's lease: %v", err)
	}
	revoked := time.Now()
	waitFor(t, wait, "b gives its shards up", func() bool { return len(b.Node().Claims()) == 0 })
	waitFor(t, wait, "a holds every shard", func() bool { return len(a.Node().Claims()) == a.Node().Shards() })
	stopped := time.Now()
	time.Sleep(3 * time.Second)
	for host, nodes := range p.since(stopped) {
		for _, n := range nodes {
			if n == "b" {
				t.Errorf("b probed %s after it lost its lease", host)
			}
		}
	}
	for _, d := range hook.deliveries() {
		if d.node == "b" && d.at.After(revoked) {
			t.Errorf("b delivered %s of %s after its lease was revoked", d.Kind, d.WatchID)
		}
	}
	for _, id := range ids {
		if n := len(hook.stages()[id]); n != 1 {
			t.Errorf("watch %s: stage alert delivered %d times, want once", id, n)
		}
	}
	t.Logf("deliveries by node before the revocation: %v", byNode)
}

// A watch added from the command line (with the nodes' alert channels)
// has the alerts of its first probe queued with it, and the node holding
// its shard delivers them.
func TestCommandLineAddQueuesAlerts(t *testing.T) {
	srv, k := etcdlab.Shared(), testKeys(t)
	hook := newWebhook(t)
	a := join(t, srv.Client(t), k, "a", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe}}, dispatcher(t, hook.srv.URL, "a"))
	owning(t, a)
	cli := join(t, srv.Client(t), k, "", watch.Config{Prober: &watch.Prober{Probe: watchtest.Probe}}, dispatcher(t, hook.srv.URL, "cli"))
	w, err := cli.Add(ctxT(t), watch.Spec{Target: "soon-cli.test"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the stage alert delivered", func() bool { return len(hook.stages()[w.ID]) == 1 })
	for _, d := range hook.deliveries() {
		if d.node != "a" {
			t.Errorf("%s delivered by %s, want the node", d.Kind, d.node)
		}
	}
}

// etcd stopped and started again: the node stops probing (it cannot prove
// its lease), answers from its copy marked stale, and when etcd is back it
// rejoins, probes again and loses or doubles no alert.
func TestEtcdStopStart(t *testing.T) {
	srv := etcdlab.Start(t)
	k := testKeys(t)
	hook := newWebhook(t)
	p := newProbes()
	a := join(t, srv.Client(t), k, "a", p.by("a"), dispatcher(t, hook.srv.URL, "a"))
	owning(t, a)
	ids := addAll(t, a, hosts(3, "soon"))
	waitFor(t, wait, "the stage alerts delivered", func() bool { return len(hook.stages()) == len(ids) })

	srv.Stop()
	stopped := time.Now()
	waitFor(t, wait, "the node gives its shards up", func() bool { return len(a.Node().Claims()) == 0 })
	quiet := time.Now()
	waitFor(t, wait, "reads say they are stale", func() bool {
		p, err := a.List(ctxT(t), "", 0)
		l := p.Watches
		return err == nil && len(l) == len(ids) && l[0].StaleSince != nil && l[0].StaleSince.Before(stopped)
	})
	time.Sleep(time.Until(quiet.Add(2 * time.Second)))
	if got := p.since(quiet.Add(500 * time.Millisecond)); len(got) > 0 {
		t.Errorf("probes without a lease: %v", got)
	}
	srv.Start()
	back := time.Now()
	waitFor(t, wait, "probing again", func() bool { return len(p.since(back)) == len(ids) })
	waitFor(t, wait, "reads current again", func() bool {
		l, err := a.Expiring(ctxT(t), nil, "", 0)
		return err == nil && l.StaleSince == nil
	})
	for h, id := range ids {
		if n := len(hook.stages()[id]); n != 1 {
			t.Errorf("%s: stage alert delivered %d times, want once", h, n)
		}
	}
}
