package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/internal/etcdlab"
)

// servers are the etcds the cluster is tested on: the embedded v3.7 (shared
// by the package's tests) and Debian's 3.4 binary, which operators run.
var servers = []struct {
	name  string
	start func(*testing.T) *etcdlab.Server
}{
	{"embedded-3.7", func(*testing.T) *etcdlab.Server { return etcdlab.Shared() }},
	{"debian-3.4", func(t *testing.T) *etcdlab.Server { return etcdlab.StartBinary(t) }},
}

func TestNodesShareShards(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			s := srv.start(t)
			cli, k := s.Client(t), testKeys(t)
			a, _ := startNode(t, cli, k, "a")
			b, _ := startNode(t, cli, k, "b")
			waitFor(t, wait, "two nodes hold every shard, each its rendezvous share", func() bool {
				return settled(t, cli, k, a, b)
			})
			// A third node joins: the others hand over its share, and
			// each hands a shard over only after it stopped using it.
			c, recC := startNode(t, etcdlab.NewClient(t, s.Endpoint), k, "c")
			waitFor(t, wait, "three nodes hold every shard", func() bool {
				return settled(t, cli, k, a, b, c)
			})
			for _, cl := range c.Claims() {
				if _, ok := recC.claim(cl.Shard); !ok {
					t.Fatalf("node c holds shard %d but was never told", cl.Shard)
				}
			}
			for _, n := range []*Node{a, b, c} {
				if got := len(n.Claims()); got < DefaultShards/5 || got > DefaultShards/2 {
					t.Errorf("node %s holds %d of %d shards: rendezvous should give about a third", n.Name(), got, DefaultShards)
				}
			}
		})
	}
}

// A node whose lease is revoked (what a partition looks like once etcd has
// expired it) stops at once: every claim's context is cancelled, its fenced
// writes are refused, and another node takes its shards; it rejoins on its
// own afterwards.
func TestRevokedLeaseStopsAtOnce(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			s := srv.start(t)
			cli, k := s.Client(t), testKeys(t)
			a, _ := startNode(t, etcdlab.NewClient(t, s.Endpoint), k, "a")
			b, _ := startNode(t, cli, k, "b")
			waitFor(t, wait, "two nodes settle", func() bool { return settled(t, cli, k, a, b) })
			held := a.Claims()

			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if _, err := cli.Revoke(ctx, memberLease(t, cli, k, "a")); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			for _, c := range held {
				select {
				case <-c.Ctx.Done():
				case <-ctx.Done():
					t.Fatalf("claim of shard %d still live after its lease was revoked", c.Shard)
				}
			}
			_, err := a.Commit(ctx, held[:1], clientv3.OpPut(k.Prefix()+"probe", "late"))
			if !errors.Is(err, ErrNotOwner) {
				t.Fatalf("fenced write after revocation: %v, want ErrNotOwner", err)
			}
			// It comes back as the same member and gets its share again.
			waitFor(t, wait, "node a rejoins and both settle", func() bool { return settled(t, cli, k, a, b) })
			if got := get(t, cli, k.Prefix()+"probe"); got != "" {
				t.Fatalf("a refused write landed: %q", got)
			}
		})
	}
}

func memberLease(t *testing.T, cli *clientv3.Client, k Keyspace, name string) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, k.Member(name))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("member %s: %v %v", name, resp, err)
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

func get(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// A node cut off from etcd (a partition, or a dead process: the others
// cannot tell) loses its shards to the others within the lease TTL, and
// stops using each one before anybody else gets it.
func TestPartitionedNodeHandsOverWithinTTL(t *testing.T) {
	s := etcdlab.Shared()
	proxy := etcdlab.NewProxy(t, s.Endpoint)
	cli, k := s.Client(t), testKeys(t)
	a, recA := startNode(t, etcdlab.NewClient(t, proxy.Endpoint), k, "a")
	b, recB := startNode(t, cli, k, "b")
	waitFor(t, wait, "two nodes settle", func() bool { return settled(t, cli, k, a, b) })
	held := a.Claims()

	cut := time.Now()
	proxy.Partition()
	waitFor(t, wait, "b holds every shard", func() bool { return len(b.Claims()) == b.Shards() })
	var last time.Time
	for _, c := range held {
		if c.Ctx.Err() == nil {
			t.Fatalf("a still holds shard %d while b has it", c.Shard)
		}
		recA.mu.Lock()
		lostAt := recA.lost[c.Shard]
		recA.mu.Unlock()
		recB.mu.Lock()
		gotAt := recB.acquired[c.Shard]
		recB.mu.Unlock()
		if !lostAt.Before(gotAt) {
			t.Errorf("shard %d: a gave it up at %s, b took it at %s: both held it", c.Shard, lostAt.Format(time.StampMicro), gotAt.Format(time.StampMicro))
		}
		if gotAt.After(last) {
			last = gotAt
		}
	}
	took := last.Sub(cut)
	t.Logf("failover: b held all of a's %d shards %s after the partition (TTL %s)", len(held), took, testTTL)
	// etcd expires a lease up to a TTL after the last renewal it received,
	// checks expiries every 500 ms, and b needs a round trip to claim.
	if took > testTTL+time.Second {
		t.Errorf("failover took %s, want within the TTL %s (+1 s of etcd's expiry granularity)", took, testTTL)
	}
	if a.Status().Connected {
		t.Error("a says it is connected across a partition")
	}
	proxy.Heal()
	waitFor(t, wait, "a rejoins after the partition heals", func() bool { return settled(t, cli, k, a, b) })
}

// An etcd outage: every node stops (it cannot prove its claims), says so,
// and all come back when etcd does, each shard held once.
func TestEtcdOutage(t *testing.T) {
	s := etcdlab.Start(t)
	cli, k := s.Client(t), testKeys(t)
	a, _ := startNode(t, etcdlab.NewClient(t, s.Endpoint), k, "a")
	b, _ := startNode(t, cli, k, "b")
	waitFor(t, wait, "two nodes settle", func() bool { return settled(t, cli, k, a, b) })
	held := append(a.Claims(), b.Claims()...)

	s.Stop()
	for _, c := range held {
		select {
		case <-c.Ctx.Done():
		case <-time.After(wait):
			t.Fatalf("claim of shard %d live %s into an etcd outage", c.Shard, wait)
		}
	}
	for _, n := range []*Node{a, b} {
		if st := n.Status(); st.Connected || st.Shards != 0 {
			t.Errorf("node %s during the outage: %+v, want disconnected with no shards", n.Name(), st)
		}
	}
	s.Start()
	waitFor(t, wait, "both nodes settle after etcd returns", func() bool { return settled(t, cli, k, a, b) })
}

// Two processes given the same node name: the second waits for the first's
// lease instead of sharing its identity.
func TestSameNameWaits(t *testing.T) {
	s := etcdlab.Shared()
	cli, k := s.Client(t), testKeys(t)
	first, _ := startNode(t, etcdlab.NewClient(t, s.Endpoint), k, "same")
	waitFor(t, wait, "first settles", func() bool { return settled(t, cli, k, first) })
	second, _ := startNode(t, cli, k, "same")
	time.Sleep(testTTL) // a lease's worth: the second must still be waiting
	if st := second.Status(); st.Connected || st.Shards != 0 {
		t.Fatalf("second node of the same name joined while the first lives: %+v", st)
	}
	first.Close()
	waitFor(t, wait, "second takes over once the first left", func() bool { return settled(t, cli, k, second) })
}

// Fenced writes land while the claim stands and never after: a node that
// was paused past its lease (its claim's context still live, as it would be
// in a frozen process) is refused by etcd itself.
func TestCommitFenced(t *testing.T) {
	cli, k, a := loneNode(t)
	c, ok := a.Owns("w_1")
	if !ok {
		t.Fatal("a does not own w_1 alone in the cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := a.Commit(ctx, []Claim{c}, clientv3.OpPut(k.State("w_1"), "v1")); err != nil {
		t.Fatalf("fenced write under a live claim: %v", err)
	}
	// Another node takes the shard over behind a's back (as after an
	// expiry a's frozen process did not see).
	if _, err := cli.Delete(ctx, c.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, c.Key, "b"); err != nil {
		t.Fatal(err)
	}
	frozen := c
	frozen.Ctx = context.Background()
	if _, err := a.Commit(ctx, []Claim{frozen}, clientv3.OpPut(k.State("w_1"), "v2")); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("fenced write after a takeover: %v, want ErrNotOwner", err)
	}
	if got := get(t, cli, k.State("w_1")); got != "v1" {
		t.Fatalf("state = %q after a refused write, want v1", got)
	}
	if c.Ctx.Err() == nil {
		t.Error("a did not notice its claim was taken")
	}
}
