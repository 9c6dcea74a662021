package etcdstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/cluster/etcdstore"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/watch"
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

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func testKeys(t testing.TB) cluster.Keyspace {
	k, err := cluster.NewKeyspace(etcdlab.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// join starts a node (or, with name "", a command-line process) on keys;
// it closes at cleanup.
func join(t testing.TB, cli *clientv3.Client, keys cluster.Keyspace, name string, cfg watch.Config, alerts watch.Alerter) *etcdstore.Service {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = etcdlab.Logger(t)
	}
	s, err := etcdstore.Join(ctxT(t), etcdstore.NodeConfig{Client: cli, Keys: keys, Name: name, TTL: testTTL,
		Engine: cfg, Alerts: alerts, Logger: cfg.Logger, ProgressEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("join %q: %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// owning waits until a node holds every shard.
func owning(t testing.TB, s *etcdstore.Service) {
	t.Helper()
	waitFor(t, wait, "the node holds every shard", func() bool {
		return len(s.Node().Claims()) == s.Node().Shards()
	})
}
