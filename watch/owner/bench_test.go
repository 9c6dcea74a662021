package owner

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// Benchmarks at the scale of 100,000 watches in one database.
//
//	go test -run '^$' -bench . -benchtime 10x -count 5 ./watch/owner/ | tee new.txt
//	benchstat new.txt
//
// The database is built once per process (about 10 s) with one realistic
// Report per watch (watchtest.FillDatabase). 1% of the watches expire
// within 30 days and 0.2% are down, so Expiring(30) returns about 1,200
// watches, each with its last Report.

const benchWatches = 100_000

var days30 = 30

var (
	benchOnce sync.Once
	benchDB   string
	benchErr  error
	benchDir  string
)

func benchDatabase(b *testing.B) string {
	benchOnce.Do(func() {
		rep := watchtest.SeedReport(b)
		benchDir, benchErr = os.MkdirTemp("", "tlswatch-bench-")
		if benchErr != nil {
			return
		}
		benchDB = filepath.Join(benchDir, "bench.db")
		benchErr = watchtest.FillDatabase(benchDB, benchWatches, rep)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB
}

func noProbe(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
	return probe.Report{}, fmt.Errorf("benchmark: no probes")
}

// rssBytes reads the resident set size from /proc (Linux).
func rssBytes() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return -1
}

// Open + load 100,000 watches + build the schedule (start to scheduling),
// and the Go heap that holds them. (Resident memory: BenchmarkIdleRSS100k,
// in a fresh process.)
func BenchmarkOpen100k(b *testing.B) {
	path := benchDatabase(b)
	cfg := testConfig(path, noProbe)
	cfg.Engine.StartupSpread = time.Hour // no overdue probes inside the benchmark
	var heap int64
	for b.Loop() {
		m, err := Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if !m.IsOwner() {
			b.Fatal("not owner")
		}
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = int64(ms.HeapInuse)
		m.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
}

func benchManager(b *testing.B) *Manager {
	cfg := testConfig(benchDatabase(b), noProbe)
	cfg.Engine.NoScheduler = true
	m, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// list_expiring over 100,000 watches (~1,200 results with their Reports).
func BenchmarkExpiring30(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	// The first call after start reads the Reports from bbolt and caches
	// them; report it apart from the steady state.
	start := time.Now()
	if _, err := m.Expiring(ctx, &days30, "", watch.MaxPageLimit); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	n := 0
	for b.Loop() {
		ws, err := m.Expiring(ctx, &days30, "", watch.MaxPageLimit)
		if err != nil {
			b.Fatal(err)
		}
		n = len(ws.Watches)
	}
	b.ReportMetric(float64(n), "watches")
	b.ReportMetric(float64(first.Microseconds())/1000, "first-call-ms")
}

// The same through a follower: RPC over the unix socket plus JSON.
func BenchmarkExpiring30Follower(b *testing.B) {
	m := benchManager(b)
	cfg := testConfig(benchDatabase(b), noProbe)
	f, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if f.Role() != "follower" {
		b.Fatal("not a follower")
	}
	_ = m
	ctx := context.Background()
	for b.Loop() {
		if _, err := f.Expiring(ctx, &days30, "", watch.MaxPageLimit); err != nil {
			b.Fatal(err)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// History writes as the watcher makes them: 100,000 probes an hour is ~28 a
// second, committed in one group per FlushInterval (1 s). One op is one
// second's worth (28 results: record + history entry + prune, one fsync).
// cpu-%core is the share of one core that rate costs.
func BenchmarkHistoryWrite100kPerHour(b *testing.B) {
	path := benchDatabase(b)
	rep := watchtest.SeedReport(b)
	db, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var recs []store.Record
	if _, err := db.ForEach(func(r store.Record) error {
		if len(recs) < 5000 {
			recs = append(recs, r)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	const perSecond = 28 // 100,000 / 3600
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		ups := make([]store.Update, perSecond)
		for j := range ups {
			r := recs[i%len(recs)]
			i++
			rp := rep
			rp.CheckedAt = time.Now()
			rp.Target = r.Target
			r.LastCheckedAt = rp.CheckedAt
			ups[j] = store.Update{Record: r, Report: &rp}
		}
		if _, err := db.Apply(ups); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	perOp := cpu / time.Duration(b.N)
	b.ReportMetric(float64(perOp.Microseconds()), "cpu-µs/s-of-probes")
	b.ReportMetric(100*perOp.Seconds(), "cpu-%core")
}

// Idle resident memory of a fresh process that owns 100,000 watches: a child
// process opens the database, starts the scheduler, idles, and reports its
// RSS (the benchmark process itself is polluted by building the database).
func BenchmarkIdleRSS100k(b *testing.B) {
	path := benchDatabase(b)
	var rss, heap, load float64
	for b.Loop() {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=rss", "TLSWATCH_TEST_DB="+path)
		cmd.ExtraFiles = []*os.File{w}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		w.Close()
		out, _ := io.ReadAll(r)
		cmd.Wait()
		if _, err := fmt.Sscanf(string(out), "RSS %f HEAP %f LOAD %f", &rss, &heap, &load); err != nil {
			b.Fatalf("child said %q: %v", out, err)
		}
	}
	b.ReportMetric(rss/(1<<20), "rss-MiB")
	b.ReportMetric(heap/(1<<20), "heap-MiB")
	b.ReportMetric(load, "open-ms")
}

// rssChild is the child of BenchmarkIdleRSS100k.
func rssChild(say func(string, ...any)) int {
	cfg := testConfig(os.Getenv("TLSWATCH_TEST_DB"), noProbe)
	cfg.Engine.StartupSpread = time.Hour
	if os.Getenv("TLSWATCH_TEST_SMAPS") != "" {
		db, err := store.Open(cfg.DBPath, store.Options{})
		if err != nil {
			say("ERR %v", err)
			return 3
		}
		fmt.Fprintf(os.Stderr, "after open: rss %d MiB\n", rssBytes()>>20)
		n := 0
		_, _ = db.ForEach(func(store.Record) error { n++; return nil })
		fmt.Fprintf(os.Stderr, "after ForEach(%d): rss %d MiB\n", n, rssBytes()>>20)
		st, _ := db.Stats()
		fmt.Fprintf(os.Stderr, "file %d MiB\n", st.FileBytes>>20)
		db.Close()
	}
	start := time.Now()
	m, err := Open(context.Background(), cfg)
	if err != nil {
		say("ERR %v", err)
		return 3
	}
	load := time.Since(start)
	defer m.Close()
	// Idle: let the garbage of loading be collected and returned.
	for i := 0; i < 3; i++ {
		runtime.GC()
		time.Sleep(time.Second)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if os.Getenv("TLSWATCH_TEST_SMAPS") != "" {
		raw, _ := os.ReadFile("/proc/self/smaps_rollup")
		fmt.Fprintf(os.Stderr, "%s\nHeapSys %d HeapIdle %d HeapReleased %d\n", raw, ms.HeapSys, ms.HeapIdle, ms.HeapReleased)
	}
	say("RSS %d HEAP %d LOAD %d", rssBytes(), ms.HeapInuse, load.Milliseconds())
	return 0
}

// Every page of list_watches over 100,000 watches (pages of 1,000): every
// record and last Report decoded. For scale only; no target is set for it.
func BenchmarkList100k(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	for b.Loop() {
		n := 0
		err := watch.EachPage(ctx, m, watch.MaxPageLimit, func(ws []watch.Watch) error { n += len(ws); return nil })
		if err != nil || n != benchWatches {
			b.Fatal(n, err)
		}
	}
}

// The first page of list_watches (the default page) over 100,000 watches.
func BenchmarkListFirstPage100k(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	for b.Loop() {
		p, err := m.List(ctx, "", 0)
		if err != nil || len(p.Watches) != watch.DefaultPageLimit {
			b.Fatal(len(p.Watches), err)
		}
	}
}
