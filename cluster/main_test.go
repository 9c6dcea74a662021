package cluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/tlswatch/tlswatch/internal/etcdlab"
)

func TestMain(m *testing.M) {
	code := m.Run()
	etcdlab.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testTTL is the shortest lease etcd grants with its default timings.
const testTTL = 2 * time.Second

// wait is the generous deadline of conditions that take a lease or two.
const wait = 30 * time.Second

// recorder keeps what a node's OnChange heard, with the time it heard it.
type recorder struct {
	mu       sync.Mutex
	acquired map[int]time.Time // latest acquisition per shard
	lost     map[int]time.Time // latest loss per shard
	claims   map[int]Claim     // latest claim per shard
}

func newRecorder() *recorder {
	return &recorder{acquired: map[int]time.Time{}, lost: map[int]time.Time{}, claims: map[int]Claim{}}
}

func (r *recorder) onChange(c Change) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cl := range c.Acquired {
		r.acquired[cl.Shard] = now
		r.claims[cl.Shard] = cl
	}
	for _, sh := range c.Lost {
		r.lost[sh] = now
	}
}

func (r *recorder) claim(sh int) (Claim, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.claims[sh]
	return c, ok
}

type nodeOpt func(*Config)

// startNode starts a node on cli under keys; it closes at cleanup.
func startNode(t *testing.T, cli *clientv3.Client, keys Keyspace, name string, opts ...nodeOpt) (*Node, *recorder) {
	t.Helper()
	rec := newRecorder()
	cfg := Config{Client: cli, Keys: keys, Name: name, TTL: testTTL, OnChange: rec.onChange,
		Logger: etcdlab.Logger(t)}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start node %s: %v", name, err)
	}
	t.Cleanup(func() { n.Close() })
	return n, rec
}

func testKeys(t *testing.T) Keyspace {
	k, err := NewKeyspace(etcdlab.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// loneNode starts node "a" alone in a fresh keyspace on the shared server
// and waits until it holds every shard.
func loneNode(t *testing.T) (*clientv3.Client, Keyspace, *Node) {
	t.Helper()
	cli, k := etcdlab.Shared().Client(t), testKeys(t)
	a, _ := startNode(t, cli, k, "a")
	waitFor(t, wait, "a settles", func() bool { return settled(t, cli, k, a) })
	return cli, k, a
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holders reads the shard claims from etcd: shard -> node.
func holders(t *testing.T, cli *clientv3.Client, k Keyspace) map[int]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, k.Shards(), clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("read claims: %v", err)
	}
	out := make(map[int]string)
	for _, kv := range resp.Kvs {
		var sh int
		fmt.Sscanf(string(kv.Key[len(k.Shards()):]), "%d", &sh)
		out[sh] = string(kv.Value)
	}
	return out
}

// settled: every shard is claimed in etcd by its rendezvous owner among
// names, and each node holds exactly its own.
func settled(t *testing.T, cli *clientv3.Client, k Keyspace, nodes ...*Node) bool {
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name())
	}
	h := holders(t, cli, k)
	if len(h) != nodes[0].Shards() {
		return false
	}
	for sh, who := range h {
		if who != ownerOf(sh, names) {
			return false
		}
	}
	for _, n := range nodes {
		for _, c := range n.Claims() {
			if h[c.Shard] != n.Name() {
				return false
			}
		}
		if !n.Status().Connected {
			return false
		}
	}
	total := 0
	for _, n := range nodes {
		total += len(n.Claims())
	}
	return total == nodes[0].Shards()
}
