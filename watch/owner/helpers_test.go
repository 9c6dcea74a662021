package owner

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// Child processes: the test binary re-executed with childEnv set. They talk
// to the parent through fd 3 (a pipe), one line per fact.
const childEnv = "TLSWATCH_OWNER_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	// Every Manager a test opened must have stopped its engine, socket
	// server and followers' streams.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testLogger logs to stderr when TLSWATCH_TEST_LOG is set, else nowhere.
func testLogger() *slog.Logger {
	if os.Getenv("TLSWATCH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is a Manager on db whose engine probes with probeFn.
func testConfig(db string, probeFn watch.ProbeFunc) Config {
	return Config{
		DBPath:        db,
		Engine:        watch.Config{Prober: &watch.Prober{Probe: probeFn, MCP: watchtest.MCP}, Logger: testLogger(), FlushInterval: 50 * time.Millisecond},
		RetryInterval: 100 * time.Millisecond,
		LockTimeout:   50 * time.Millisecond,
	}
}

func openManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "tlswatch.db") }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runChild is the body of a child process: it opens a Manager on the
// parent's database with the canned probe, says its role and each probe,
// then does what mode says.
func runChild(mode string) int {
	out := os.NewFile(3, "report")
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	if mode == "rss" {
		return rssChild(say)
	}
	probeFn := func(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
		say("PROBE %s", t.Host)
		return watchtest.Probe(ctx, t, o)
	}
	m, err := Open(context.Background(), testConfig(os.Getenv("TLSWATCH_TEST_DB"), probeFn))
	if err != nil {
		say("ERR open: %v", err)
		return 3
	}
	say("ROLE %s", m.Role())
	switch mode {
	case "owner":
		if _, err := m.Add(context.Background(), watch.Spec{Target: "a.test", Schedule: "@every 1h"}); err != nil {
			say("ERR add: %v", err)
			return 3
		}
		say("READY")
		select {}
	case "adder":
		// Add watches one after the other and acknowledge each that returned.
		for i := 0; i < 1000; i++ {
			w, err := m.Add(context.Background(), watch.Spec{Target: fmt.Sprintf("h%d.test", i), Schedule: "@every 10s"})
			if err != nil {
				say("ERR add: %v", err)
				return 3
			}
			say("ACK %s", w.ID)
		}
		say("DONE")
		select {}
	}
	return 3
}

type child struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startChild(t *testing.T, mode, db string) *child {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "TLSWATCH_TEST_DB="+db)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		<-c.done
	})
	return c
}

// with returns the lines that start with prefix, without it.
func (c *child) with(prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, strings.TrimPrefix(l, prefix))
		}
	}
	return out
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()
	<-c.done
}
