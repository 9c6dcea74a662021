package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/watch"
)

// handshakes is a TLS server for many watches at once: each watch is its
// own host name under one wildcard certificate, and the server counts the
// handshakes it completes per name (a probe's legacy-protocol attempt is
// refused, so one probe is one handshake).
type handshakes struct {
	addr string
	cur  atomic.Pointer[tls.Certificate]
	mu   sync.Mutex
	at   map[string][]time.Time
}

func serveHandshakes(t *testing.T, cert tls.Certificate) *handshakes {
	t.Helper()
	h := &handshakes{at: map[string][]time.Time{}}
	h.cur.Store(&cert)
	h.addr = testlab.ServeTLS(t, &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.cur.Load(), nil },
		// Called once the versions, suites and certificate are agreed: a
		// handshake that gets here is one probe's.
		VerifyConnection: func(cs tls.ConnectionState) error {
			h.mu.Lock()
			h.at[cs.ServerName] = append(h.at[cs.ServerName], time.Now())
			h.mu.Unlock()
			return nil
		},
	})
	return h
}

func (h *handshakes) rotate(cert tls.Certificate) { h.cur.Store(&cert) }

// count is the handshakes per name in [from, to).
func (h *handshakes) count(names []string, from, to time.Time) map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, n := range names {
		for _, at := range h.at[n] {
			if !at.Before(from) && at.Before(to) {
				out[n]++
			}
		}
	}
	return out
}

// node is one serve --etcd process with an MCP client.
type node struct {
	name string
	p    *serveProc
	c    *client.Client
	ch   notes
}

func startNode(t *testing.T, name string, args []string) *node {
	t.Helper()
	n := &node{name: name, p: startServe(t, append(args, "--node", name))}
	tr, err := transport.NewStreamableHTTP(n.p.url, transport.WithContinuousListening())
	if err != nil {
		t.Fatal(err)
	}
	n.c = client.NewClient(tr, client.WithProtocolVersion(legacyVersion))
	n.ch = collect(n.c)
	if err := n.c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.c.Close() })
	initialize(t, n.c)
	return n
}

// listing is list_watches on one node: id -> watch.
func (n *node) listing(t *testing.T) map[string]map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := callTool(ctx, n.c, "list_watches", map[string]any{})
	if err != nil {
		t.Fatalf("%s: list_watches: %v\n%s", n.name, err, n.p.logs.String())
	}
	out := map[string]map[string]any{}
	for _, w := range m["watches"].([]any) {
		w := w.(map[string]any)
		out[w["id"].(string)] = w
	}
	return out
}

// checkOneProber: each watch completed 7 to 14 handshakes in 10 s: one
// prober at @every 1s, not two.
func checkOneProber(t *testing.T, h *handshakes, names []string, from time.Time, what string) {
	t.Helper()
	time.Sleep(time.Until(from.Add(10 * time.Second)))
	counts := h.count(names, from, from.Add(10*time.Second))
	for _, n := range names {
		if c := counts[n]; c < 7 || c > 14 {
			t.Errorf("%s: %s completed %d handshakes in 10 s, want 7 to 14 (one prober at @every 1s)", what, n, c)
		}
	}
	t.Logf("%s: handshakes per watch in 10 s: %v", what, counts)
}

// TestThreeNodes: three serve --etcd processes on one etcd (in the test
// process) and 12 watches at @every 1s. Every node lists the 12; each
// watch is probed by one node (handshakes counted at the TLS server); a
// certificate rotation reaches every node's subscribers whichever node
// probed; the busiest node is SIGKILLed and within 25 s every watch is
// probed again by a live node, by one only. Every alert reaches the
// webhook once (by delivery id), and every node's tlswatch://alerts shows
// the same events, each once.
func TestThreeNodes(t *testing.T) {
	clusterTest(t, etcdlab.Start(t))
}

// clusterLab is what a cluster test runs against: an etcd, a TLS server
// for every watch (one name each, under a wildcard certificate due in 5
// days), a webhook receiver, and serve's arguments for them.
type clusterLab struct {
	*lab
	etcd   *etcdlab.Server
	h      *handshakes
	port   string
	r      *receiver
	prefix string
	args   []string
}

func newClusterLab(t *testing.T, etcd *etcdlab.Server) *clusterLab {
	t.Helper()
	c := &clusterLab{lab: newLab(t), etcd: etcd, prefix: etcdlab.Prefix(t)}
	c.h = serveHandshakes(t, c.leaf())
	_, c.port, _ = net.SplitHostPort(c.h.addr)
	const secret = "cluster-secret"
	c.r = newReceiver(t, secret)
	c.args = []string{"serve", "--etcd", etcd.Endpoint, "--etcd-prefix", c.prefix, "--ca-file", c.caFile,
		"--config", alertConfig(t, c.dir, c.r.srv.URL, secret)}
	return c
}

func (c *clusterLab) leaf() tls.Certificate {
	return c.pki.Leaf(testlab.LeafOpts{DNSNames: []string{"*." + testlab.DefaultHost}, NotAfter: c.pki.Now.Add(5 * 24 * time.Hour)})
}

// addWatches adds n watches at @every 1s, named prefix00.., through the
// nodes in turn; it returns their names and id -> name.
func (c *clusterLab) addWatches(t *testing.T, nodes []*node, n int, prefix string) ([]string, map[string]string) {
	t.Helper()
	names := make([]string, n)
	ids := map[string]string{}
	for i := range names {
		names[i] = fmt.Sprintf("%s%02d.%s", prefix, i, testlab.DefaultHost)
		w := structured(t, call(t, nodes[i%len(nodes)].c, "watch_endpoint", map[string]any{
			"target": names[i] + ":" + c.port, "ip": "127.0.0.1", "schedule": "@every 1s"}))
		ids[w["id"].(string)] = names[i]
	}
	return names, ids
}

func clusterTest(t *testing.T, etcd *etcdlab.Server) {
	c := newClusterLab(t, etcd)
	h := c.h
	var nodes []*node
	for _, name := range []string{"n1", "n2", "n3"} {
		nodes = append(nodes, startNode(t, name, c.args))
	}
	names, ids := c.addWatches(t, nodes, 12, "w")
	for _, n := range nodes {
		if got := n.listing(t); len(got) != len(names) {
			t.Fatalf("%s lists %d watches, want %d", n.name, len(got), len(names))
		}
	}
	time.Sleep(2 * time.Second) // the shards settle among the three
	checkOneProber(t, h, names, time.Now(), "three nodes")

	// A rotation, seen by whichever node probes the watch, reaches the
	// subscribers of every node.
	var first string
	for id := range ids {
		first = id
		break
	}
	uri := "tlswatch://watches/" + first
	for _, n := range nodes {
		subscribe(t, n.c, uri)
	}
	h.rotate(c.leaf())
	for _, n := range nodes {
		n.ch.wait(t, "notifications/resources/updated", uri, 15*time.Second)
	}

	busiest, count := busiest(t, nodes, ids)
	t.Logf("watches per node before the kill: %v; killing %s", count, busiest.name)
	busiest.p.kill()
	killed := time.Now()
	var live []*node
	for _, n := range nodes {
		if n != busiest {
			live = append(live, n)
		}
	}
	failover := waitReprobed(t, live[0], ids, busiest.name, killed)
	t.Logf("every watch probed again by a live node %s after the SIGKILL", failover.Round(100*time.Millisecond))
	checkOneProber(t, h, names, time.Now(), "two nodes after the kill")
	checkAlertsOnce(t, c.r, ids)
	checkClusterFeed(t, live, ids)
	for _, n := range nodes {
		if n.p.raced() {
			t.Errorf("%s: the race detector fired:\n%s", n.name, n.p.logs.String())
		}
	}
}

// busiest is the node that probes the most watches (by probed_by).
func busiest(t *testing.T, nodes []*node, ids map[string]string) (*node, map[string]int) {
	t.Helper()
	count := map[string]int{}
	for id, w := range nodes[0].listing(t) {
		if _, ok := ids[id]; ok {
			by, _ := w["probed_by"].(string)
			count[by]++
		}
	}
	best := ""
	for name, c := range count {
		if best == "" || c > count[best] || (c == count[best] && name < best) {
			best = name
		}
	}
	for _, cand := range nodes {
		if cand.name == best {
			return cand, count
		}
	}
	t.Fatalf("no node named %q among %v", best, count)
	return nil, nil
}

// waitReprobed waits (25 s at most) until every watch was probed after the
// kill by a node other than the dead one, and returns how long it took.
func waitReprobed(t *testing.T, n *node, ids map[string]string, dead string, killed time.Time) time.Duration {
	t.Helper()
	deadline := killed.Add(25 * time.Second)
	for {
		pending := []string{}
		for id, w := range n.listing(t) {
			if _, ok := ids[id]; !ok {
				continue
			}
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(w["last_checked_at"]))
			if by := fmt.Sprint(w["probed_by"]); by == dead || !at.After(killed) {
				pending = append(pending, ids[id]+" ("+by+")")
			}
		}
		if len(pending) == 0 {
			return time.Since(killed)
		}
		if time.Now().After(deadline) {
			sort.Strings(pending)
			t.Fatalf("25 s after the SIGKILL, not probed again by a live node: %v\n%s", pending, n.p.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAlertsOnce: each watch's two stage alerts (one per certificate) and
// its first "is up" arrived, each once by delivery id.
func checkAlertsOnce(t *testing.T, r *receiver, ids map[string]string) {
	t.Helper()
	type key struct{ kind, watch, fp string }
	var byKey map[key]map[string]bool
	deadline := time.Now().Add(20 * time.Second)
	for {
		byKey = map[key]map[string]bool{}
		for _, d := range r.accepted() {
			k := key{d.alert.Kind, d.alert.WatchID, d.alert.Fingerprint}
			if k.kind == watch.EventStatusChanged {
				k.fp = d.alert.State
			}
			if byKey[k] == nil {
				byKey[k] = map[string]bool{}
			}
			byKey[k][d.id] = true
		}
		stages := 0
		for k := range byKey {
			if k.kind == watch.EventStageCrossed {
				stages++
			}
		}
		if stages >= 2*len(ids) || time.Now().After(deadline) {
			if stages != 2*len(ids) {
				t.Errorf("%d stage alerts delivered, want %d (two certificates for each of %d watches)", stages, 2*len(ids), len(ids))
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for k, deliveries := range byKey {
		if _, ok := ids[k.watch]; !ok {
			t.Errorf("%s alert for an unknown watch %s", k.kind, k.watch)
		}
		if len(deliveries) != 1 {
			t.Errorf("%s alert of %s (%.16s) delivered %d times", k.kind, ids[k.watch], k.fp, len(deliveries))
		}
	}
}

// checkClusterFeed reads tlswatch://alerts from every node: the same
// entries everywhere, each watch added once, two stage alerts each.
func checkClusterFeed(t *testing.T, nodes []*node, ids map[string]string) {
	t.Helper()
	var first []string
	for i, n := range nodes {
		var got []string
		added, stages := map[string]int{}, map[string]int{}
		for after := ""; ; {
			uri := alertsURI + "?limit=" + fmt.Sprint(watch.MaxAlertsLimit)
			if after != "" {
				uri += "&after=" + after
			}
			f := decodeFeed(t, readText(t, n.c, uri))
			for _, e := range f.Alerts {
				got = append(got, e.ID+" "+e.Kind+" "+e.WatchID)
				switch e.Kind {
				case watch.EventWatchAdded:
					added[e.WatchID]++
				case watch.EventStageCrossed:
					stages[e.WatchID]++
				}
			}
			if len(f.Alerts) == 0 {
				break
			}
			after = f.Next
		}
		for id, host := range ids {
			if added[id] != 1 || stages[id] != 2 {
				t.Errorf("%s's feed: %s added %d times and %d stage alerts, want 1 and 2", n.name, host, added[id], stages[id])
			}
		}
		if i == 0 {
			first = got
		} else if strings.Join(got, "\n") != strings.Join(first, "\n") {
			t.Errorf("%s's feed differs from %s's:\n%v\n%v", n.name, nodes[0].name, got, first)
		}
	}
}

// TestRevokedLeaseOnDebianEtcd runs two serve --etcd processes on Debian's
// etcd-server 3.4 (the test fails when it is not installed) and revokes one
// node's lease while its process keeps running, what a partition looks like
// once etcd has expired it, just as every certificate rotates. The node
// stops probing at once (no watch is probed twice as often), fires
// nothing twice (each watch's alert for the new certificate arrives once),
// keeps answering reads, and rejoins on its own.
func TestRevokedLeaseOnDebianEtcd(t *testing.T) {
	c := newClusterLab(t, etcdlab.StartBinary(t))
	etcd, h, prefix := c.etcd, c.h, c.prefix
	n1, n2 := startNode(t, "n1", c.args), startNode(t, "n2", c.args)
	names, ids := c.addWatches(t, []*node{n1}, 8, "p")
	waitProbedBy(t, n1, ids, "n2", time.Now())

	cli := etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, _ := cluster.NewKeyspace(prefix)
	m, err := cli.Get(ctx, keys.Member("n2"))
	if err != nil || len(m.Kvs) != 1 {
		t.Fatalf("n2's member key: %v %v", m, err)
	}
	h.rotate(c.leaf())
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(m.Kvs[0].Lease)); err != nil {
		t.Fatalf("revoke n2's lease: %v", err)
	}
	revoked := time.Now()
	if got := n2.listing(t); len(got) != len(names) {
		t.Errorf("n2 lists %d watches after losing its lease, want %d", len(got), len(names))
	}
	time.Sleep(time.Until(revoked.Add(10 * time.Second)))
	counts := h.count(names, revoked, revoked.Add(10*time.Second))
	for _, n := range names {
		if c := counts[n]; c > 14 {
			t.Errorf("%s completed %d handshakes in the 10 s after the revocation: probed by two nodes", n, c)
		}
	}
	if !strings.Contains(n2.p.logs.String(), "lost the lease") {
		t.Errorf("n2 does not say it lost its lease:\n%s", n2.p.logs.String())
	}
	waitProbedBy(t, n1, ids, "n2", revoked) // back, with its share
	checkOneProber(t, h, names, time.Now(), "after n2 rejoined")
	checkAlertsOnce(t, c.r, ids)
	checkClusterFeed(t, []*node{n1, n2}, ids)
}

// waitProbedBy waits until node has probed one of the watches after
// since.
func waitProbedBy(t *testing.T, n *node, ids map[string]string, node string, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for id, w := range n.listing(t) {
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(w["last_checked_at"]))
			if _, ok := ids[id]; ok && w["probed_by"] == node && at.After(since) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s probed none of the watches since %s, after 30 s", node, since.Format(time.RFC3339Nano))
}
