package etcdstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/cluster/etcdstore"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// etcdCounters reads the embedded server's own counters (the process's
// Prometheus registry).
func etcdCounters(b *testing.B) map[string]float64 {
	b.Helper()
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		switch f.GetName() {
		case "etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_network_client_grpc_received_bytes_total":
			out[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return out
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cannedProbe is a server that keeps its certificate (issued at certAt):
// the Report's content is the same from one probe to the next, only its
// time and timing change.
func cannedProbe(certAt time.Time) watch.ProbeFunc {
	var n atomic.Int64
	return func(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
		o.Now = certAt
		r, err := watchtest.Probe(ctx, t, o)
		r.CheckedAt, r.Timing = time.Now(), probe.Timing{Connect: 0.2, Handshake: 1.5 + float64(n.Add(1)%7)/10, Total: 1.8}
		return r, err
	}
}

// populate writes n watches at @every period, each as it is after its
// first probe (its certificate's alert state too), as Adds from a
// command-line process would.
func populate(b *testing.B, cli *clientv3.Client, keys cluster.Keyspace, n int, period string, probeFn watch.ProbeFunc) {
	b.Helper()
	st, err := etcdstore.Open(context.Background(), etcdstore.Config{Client: cli, Keys: keys, Writer: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < n; i += 500 {
		var ups []store.Update
		for j := i; j < min(i+500, n); j++ {
			rep, _ := probeFn(context.Background(), probe.Target{Host: fmt.Sprintf("w%05d.test", j), Port: 443}, probe.Options{})
			now := rep.CheckedAt
			rec := store.Record{ID: fmt.Sprintf("w_%016x", j), Target: rep.Target, Schedule: period, Thresholds: probe.DefaultThresholds,
				FailureThreshold: 3, CreatedAt: now, UpdatedAt: now, State: watch.StateUp, LastCheckedAt: now, LastStatus: string(rep.Status),
				NotAfter: rep.Leaf.NotAfter, Fingerprint: rep.Leaf.SHA256}
			a := store.Alert{Fingerprint: rep.Leaf.SHA256, NotAfter: rep.Leaf.NotAfter, FirstSeen: now}
			ups = append(ups, store.Update{Record: rec, Create: true, Report: &rep, Alert: &a})
		}
		if _, err := st.Apply(ups); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTenThousandWatchesThreeNodes: 10,000 watches at @every 1m over
// three nodes in this process (the default lease TTL, 10 s) on one
// embedded etcd (fsync off, as in every test), canned probes of servers
// that keep their certificate. Reported: etcd writes (Txns, puts) and bytes sent
// to etcd per probe, bytes kept per watch, the nodes' start, CPU and heap,
// and after one node is cut off, when the others hold its shards and when
// each of its watches has been probed again. Run with -benchtime=1x.
func BenchmarkTenThousandWatchesThreeNodes(b *testing.B) {
	const n, period, window = 10000, time.Minute, time.Minute
	for range b.N {
		srv := etcdlab.Start(b)
		keys := testKeys(b)
		canned := cannedProbe(time.Now())
		populate(b, srv.Client(b), keys, n, "@every 1m", canned)
		var probes atomic.Int64
		last := &lastProbes{at: map[string]time.Time{}}
		prober := func(live bool) watch.Config {
			return watch.Config{Prober: &watch.Prober{Probe: func(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
				probes.Add(1)
				if live {
					last.set(t.Host)
				}
				return canned(ctx, t, o)
			}}, Logger: quiet}
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		proxy := etcdlab.NewProxy(b, srv.Endpoint)
		var nodes []*etcdstore.Service
		for i, ep := range []string{srv.Endpoint, srv.Endpoint, proxy.Endpoint} {
			s, err := etcdstore.Join(ctxT(b), etcdstore.NodeConfig{Client: etcdlab.NewClient(b, ep), Keys: keys,
				Name: fmt.Sprintf("n%d", i+1), Engine: prober(i < 2), Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			nodes = append(nodes, s)
		}
		waitFor(b, 5*time.Minute, "three nodes share the shards", func() bool {
			held := 0
			for _, s := range nodes {
				if len(s.Node().Claims()) == 0 {
					return false
				}
				held += len(s.Node().Claims())
			}
			return held == nodes[0].Node().Shards()
		})
		startup := time.Since(start)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)

		c0, p0, cpu0, rev0 := etcdCounters(b), probes.Load(), cpuTime(), revision(b, srv)
		time.Sleep(window)
		c1, p1, cpu1, rev1 := etcdCounters(b), probes.Load(), cpuTime(), revision(b, srv)
		done := float64(p1 - p0)
		b.ReportMetric(done/window.Seconds(), "probes/s")
		b.ReportMetric(float64(rev1-rev0)/done, "txns/probe")
		b.ReportMetric((c1["etcd_mvcc_put_total"]-c0["etcd_mvcc_put_total"])/done, "puts/probe")
		b.ReportMetric((c1["etcd_network_client_grpc_received_bytes_total"]-c0["etcd_network_client_grpc_received_bytes_total"])/done, "sent-B/probe")
		b.ReportMetric(float64(cpu1-cpu0)/float64(window)*100, "cpu-%-of-a-core")
		b.ReportMetric(float64(keyspaceBytes(b, srv, keys))/n, "etcd-B/watch")
		b.ReportMetric(startup.Seconds(), "start-s")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/3/n, "heap-B/watch/node")
		failover(b, nodes, proxy, last, n)
	}
}

// lastProbes is when the live nodes last probed each host.
type lastProbes struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (l *lastProbes) set(host string) {
	l.mu.Lock()
	l.at[host] = time.Now()
	l.mu.Unlock()
}

func (l *lastProbes) since(host string, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at[host].After(t)
}

var quiet = slog.New(slog.DiscardHandler)

func revision(b *testing.B, srv *etcdlab.Server) int64 {
	b.Helper()
	resp, err := srv.Client(b).Get(ctxT(b), "rev", clientv3.WithCountOnly())
	if err != nil {
		b.Fatal(err)
	}
	return resp.Header.Revision
}

// keyspaceBytes is what the keyspace holds: keys and values.
func keyspaceBytes(b *testing.B, srv *etcdlab.Server, keys cluster.Keyspace) int {
	b.Helper()
	total := 0
	from := keys.Prefix()
	end := clientv3.GetPrefixRangeEnd(from)
	for {
		resp, err := srv.Client(b).Get(ctxT(b), from, clientv3.WithRange(end), clientv3.WithLimit(1000))
		if err != nil {
			b.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			total += len(kv.Key) + len(kv.Value)
		}
		if !resp.More {
			return total
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// failover cuts the third node off (the others cannot tell a partition
// from a death) and reports when the others hold its shards and when every
// one of its watches has been probed again.
func failover(b *testing.B, nodes []*etcdstore.Service, proxy *etcdlab.Proxy, last *lastProbes, n int) {
	dead := map[int]bool{}
	for _, c := range nodes[2].Node().Claims() {
		dead[c.Shard] = true
	}
	var hosts []string
	for i := 0; i < n; i++ {
		if dead[cluster.ShardOf(fmt.Sprintf("w_%016x", i), nodes[0].Node().Shards())] {
			hosts = append(hosts, fmt.Sprintf("w%05d.test", i))
		}
	}
	proxy.Partition()
	cut := time.Now()
	waitFor(b, 5*time.Minute, "the others hold every shard", func() bool {
		return len(nodes[0].Node().Claims())+len(nodes[1].Node().Claims()) == nodes[0].Node().Shards()
	})
	b.ReportMetric(time.Since(cut).Seconds(), "takeover-s")
	waitFor(b, 5*time.Minute, "every watch of the dead node probed again", func() bool {
		for _, h := range hosts {
			if !last.since(h, cut) {
				return false
			}
		}
		return true
	})
	b.ReportMetric(time.Since(cut).Seconds(), "all-reprobed-s")
	b.ReportMetric(float64(len(hosts)), "watches-taken-over")
}

// BenchmarkWatchWithFullHistory: what one watch keeps in etcd once its
// history is full (etcdstore.KeepSamples results of a server that keeps its
// certificate), and what each probe writes.
func BenchmarkWatchWithFullHistory(b *testing.B) {
	for range b.N {
		srv := etcdlab.Start(b)
		keys := testKeys(b)
		st, err := etcdstore.Open(ctxT(b), etcdstore.Config{Client: srv.Client(b), Keys: keys, Writer: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		canned := cannedProbe(time.Now())
		var rec store.Record
		c0, rev0 := etcdCounters(b), revision(b, srv)
		const probes = etcdstore.KeepSamples + 2*etcdstore.SegmentSamples
		for i := 0; i < probes; i++ {
			rep, _ := canned(context.Background(), probe.Target{Host: "full.test", Port: 443}, probe.Options{})
			if i == 0 {
				rec = store.Record{ID: "w_full", Target: rep.Target, Schedule: "@every 1m", Thresholds: probe.DefaultThresholds,
					FailureThreshold: 3, CreatedAt: rep.CheckedAt, State: watch.StateUp}
			}
			rec.LastCheckedAt, rec.LastStatus, rec.Fingerprint, rec.NotAfter = rep.CheckedAt, string(rep.Status), rep.Leaf.SHA256, rep.Leaf.NotAfter
			if _, err := st.Apply([]store.Update{{Record: rec, Create: true, Report: &rep}}); err != nil {
				b.Fatal(err)
			}
		}
		c1, rev1 := etcdCounters(b), revision(b, srv)
		b.ReportMetric(float64(keyspaceBytes(b, srv, keys)), "etcd-B/watch")
		b.ReportMetric((c1["etcd_mvcc_put_total"]-c0["etcd_mvcc_put_total"])/probes, "puts/probe")
		b.ReportMetric((c1["etcd_mvcc_delete_total"]-c0["etcd_mvcc_delete_total"])/probes, "deletes/probe")
		b.ReportMetric(float64(rev1-rev0)/probes, "txns/probe-unbatched")
		st.Close()
	}
}
