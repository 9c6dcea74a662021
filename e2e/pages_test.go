package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// The built server on a database of 100,000 watches, each with a
// realistic Report (watchtest.FillDatabase, as the watcher's benchmarks;
// their targets are pinned to 127.0.0.1, so the probes serve makes of the
// overdue ones stay on loopback): 8 MCP clients, each in its own session,
// call list_watches at once, again and again. The resident memory of the
// serve process is read from /proc (Linux): once it has settled after
// loading (whose own peak is reported apart, load-peak-rss-MiB), its peak
// (VmHWM, reset when the calls start) over the calls, and how much of the
// resident memory at the end is the process's own (RssAnon) and how much
// pages of the database file it maps (RssFile).
//
//	go test -run '^$' -bench ListWatchesRSS100k -benchtime 20x -count 3 ./e2e/
//
// page=default is the first page as a client gets it without arguments;
// page=max asks for the largest page a call can (1,000 watches).
// sched=quiet runs serve with --min-interval 24h, so that its scheduler
// probes about one watch a second and the figures are those of the calls;
// sched=busy runs the fleet's own schedules (about 22 probes a second, and
// a burst of the 25,000 hourly cron watches in the first five minutes of
// every hour). Every probe here fails (no server answers for those names),
// so in sched=busy each probed watch also keeps its last Report in memory,
// as the watcher does for every watch that is not ok.

const (
	rssWatches = 100_000
	rssClients = 8
)

func BenchmarkListWatchesRSS100k(b *testing.B) {
	rep := watchtest.SeedReport(b)
	path := filepath.Join(b.TempDir(), "bench.db")
	if err := watchtest.FillDatabase(path, rssWatches, rep); err != nil {
		b.Fatal(err)
	}
	for _, sched := range []struct {
		name string
		args []string
	}{
		{"sched=quiet", []string{"--min-interval", "24h"}},
		{"sched=busy", nil},
	} {
		for _, page := range []struct {
			name string
			args map[string]any
			want int
		}{
			{"page=default", map[string]any{}, 100},
			{"page=max", map[string]any{"limit": 1000}, 1000},
		} {
			b.Run(sched.name+"/"+page.name, func(b *testing.B) {
				benchListRSS(b, path, sched.args, page.args, page.want)
			})
		}
	}
}

func benchListRSS(b *testing.B, path string, serveArgs []string, args map[string]any, want int) {
	p, err := launchServe(append([]string{"serve", "--db", path, "--backup-every", "0"}, serveArgs...))
	if err != nil {
		b.Fatal(err)
	}
	defer p.kill()
	clients := make([]*client.Client, rssClients)
	for i := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		clients[i], err = p.dial(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		defer clients[i].Close()
	}
	pid := p.cmd.Process.Pid
	loadPeak := procStatus(b, pid, "VmHWM")
	before := settle(b, pid)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		b.Fatalf("reset the peak resident size: %v", err)
	}
	var calls time.Duration
	for b.Loop() {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(clients))
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				out, err := callTool(ctx, c, "list_watches", args)
				if ws, _ := out["watches"].([]any); err == nil && len(ws) != want {
					err = fmt.Errorf("%d watches, want %d", len(ws), want)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		calls += time.Since(start)
	}
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	b.ReportMetric(mib(loadPeak), "load-peak-rss-MiB")
	b.ReportMetric(mib(before), "rss-before-MiB")
	b.ReportMetric(mib(procStatus(b, pid, "VmHWM")), "peak-rss-MiB")
	b.ReportMetric(mib(procStatus(b, pid, "RssAnon")), "anon-end-MiB")
	b.ReportMetric(mib(procStatus(b, pid, "RssFile")), "file-end-MiB")
	b.ReportMetric(float64(calls.Milliseconds())/float64(b.N), "ms/8-calls")
}

// settle waits (20 s at most) until the resident size of pid stops moving
// by more than 1 MiB a second (the garbage of loading collected, the
// mapped file released), and returns it.
func settle(b *testing.B, pid int) int64 {
	last := procStatus(b, pid, "VmRSS")
	for range 20 {
		time.Sleep(time.Second)
		now := procStatus(b, pid, "VmRSS")
		if d := now - last; d < 1<<20 && d > -(1<<20) {
			return now
		}
		last = now
	}
	return last
}

// procStatus reads one "kB" line of /proc/PID/status, in bytes.
func procStatus(b *testing.B, pid int, key string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("%s not in /proc/%d/status", key, pid)
	return 0
}

// allWatches reads every page of list_watches (the largest pages).
func allWatches(ctx context.Context, c *client.Client) ([]map[string]any, error) {
	var out []map[string]any
	args := map[string]any{"limit": 1000}
	for {
		page, err := callTool(ctx, c, "list_watches", args)
		if err != nil {
			return nil, err
		}
		ws, _ := page["watches"].([]any)
		for _, w := range ws {
			out = append(out, w.(map[string]any))
		}
		next, _ := page["next_cursor"].(string)
		if next == "" {
			return out, nil
		}
		args = map[string]any{"limit": 1000, "cursor": next}
	}
}
