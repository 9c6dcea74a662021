package watch

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

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// Benchmarks at the scale of issue 7: 100,000 watches in one database.
//
//	go test -run '^$' -bench . -benchtime 10x -count 5 ./watch/ | tee new.txt
//	benchstat new.txt
//
// The database is built once per process (about 10 s) with one realistic
// Report per watch (taken from a real probe of a loopback server). 1% of the
// watches expire within 30 days and 0.2% are down, so Expiring(30) returns
// about 1,200 watches, each with its last Report.

const benchWatches = 100_000

var (
	benchOnce sync.Once
	benchDB   string
	benchErr  error
	benchDir  string
)

func benchReport(b *testing.B) probe.Report {
	p := testlab.NewPKI(b)
	srv := serveLab(b, leafIn(p, 90*24*time.Hour))
	rep, err := realProbe(p, nil)(context.Background(), srv.target(5*time.Second), probe.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return rep
}

func benchDatabase(b *testing.B) string {
	benchOnce.Do(func() {
		rep := benchReport(b)
		benchDir, benchErr = os.MkdirTemp("", "tlswatch-bench-")
		if benchErr != nil {
			return
		}
		benchDB = filepath.Join(benchDir, "bench.db")
		benchErr = fillDatabase(benchDB, benchWatches, rep)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB
}

func fillDatabase(path string, n int, rep probe.Report) error {
	db, err := store.Open(path, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	now := time.Now()
	scheds := []string{"@every 6h", "@every 1h", "0 * * * *", "@every 30m"}
	const batch = 2000
	for i := 0; i < n; i += batch {
		ups := make([]store.Update, 0, batch)
		for j := i; j < i+batch && j < n; j++ {
			days := 31 + j%360 // 31..390 days out
			state := StateUp
			switch {
			case j%100 == 7:
				days = j % 30 // 1%: within 30 days
			case j%500 == 11:
				state = StateDown // 0.2%: down
			}
			notAfter := now.Add(time.Duration(days)*24*time.Hour + time.Hour)
			r := rep
			r.Target.Host = fmt.Sprintf("host%06d.example.com", j)
			r.CheckedAt = now.Add(-time.Duration(j%3600) * time.Second)
			leaf := *r.Leaf
			leaf.NotAfter = notAfter
			leaf.DaysRemaining = days
			leaf.SHA256 = fmt.Sprintf("%064x", j)
			r.Leaf = &leaf
			id := fmt.Sprintf("w_%016x", uint64(j)*0x9e3779b97f4a7c15)
			rec := store.Record{ID: id, Target: r.Target, Schedule: scheds[j%len(scheds)],
				Thresholds: DefaultThresholds, FailureThreshold: 3, CreatedAt: now, UpdatedAt: now,
				State: state, LastCheckedAt: r.CheckedAt, LastStatus: string(r.Status),
				NotAfter: notAfter, Fingerprint: leaf.SHA256}
			ups = append(ups, store.Update{Record: rec, Create: true, Report: &r})
		}
		if _, err := db.Apply(ups); err != nil {
			return err
		}
	}
	return nil
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
	cfg.StartupSpread = time.Hour // no overdue probes inside the benchmark
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
	cfg.NoScheduler = true
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
	if _, err := m.Expiring(ctx, 30); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	n := 0
	for b.Loop() {
		ws, err := m.Expiring(ctx, 30)
		if err != nil {
			b.Fatal(err)
		}
		n = len(ws)
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
		if _, err := f.Expiring(ctx, 30); err != nil {
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
	rep := benchReport(b)
	db, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var recs []store.Record
	if err := db.ForEach(func(r store.Record) error {
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
	cfg.StartupSpread = time.Hour
	if os.Getenv("TLSWATCH_TEST_SMAPS") != "" {
		db, err := store.Open(cfg.DBPath, store.Options{})
		if err != nil {
			say("ERR %v", err)
			return 3
		}
		fmt.Fprintf(os.Stderr, "after open: rss %d MiB\n", rssBytes()>>20)
		n := 0
		db.ForEach(func(store.Record) error { n++; return nil })
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

// list_watches over 100,000 watches: every record and last Report decoded.
// For scale only; it is not a goal of issue 7.
func BenchmarkList100k(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	for b.Loop() {
		ws, err := m.List(ctx)
		if err != nil || len(ws) != benchWatches {
			b.Fatal(len(ws), err)
		}
	}
}
