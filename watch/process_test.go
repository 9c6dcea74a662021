package watch

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// Child processes: the test binary re-executed with childEnv set. They talk
// to the parent through fd 3 (a pipe), one line per fact.
const childEnv = "TLSWATCH_WATCH_TEST_CHILD"

func runChild(mode string) int {
	out := os.NewFile(3, "report")
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	if mode == "rss" {
		return rssChild(say)
	}
	roots := x509.NewCertPool()
	if pemPath := os.Getenv("TLSWATCH_TEST_ROOTS"); pemPath != "" {
		raw, err := os.ReadFile(pemPath)
		if err != nil {
			say("ERR %v", err)
			return 3
		}
		roots.AppendCertsFromPEM(raw)
	}
	probeFn := func(ctx context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
		say("PROBE %s", t.Host)
		o.Roots = roots
		o.NoAIA, o.NoLegacyProtocols, o.NoRevocation, o.SingleAddress = true, true, true, true
		return probe.Run(ctx, t, o)
	}
	cfg := testConfig(os.Getenv("TLSWATCH_TEST_DB"), probeFn)
	m, err := Open(context.Background(), cfg)
	if err != nil {
		say("ERR open: %v", err)
		return 3
	}
	say("ROLE %s", m.Role())
	port, _ := strconv.Atoi(os.Getenv("TLSWATCH_TEST_PORT"))
	switch mode {
	case "owner":
		// Probe the lab server every second, then wait to be killed.
		_, err := m.Add(context.Background(), Spec{Target: probe.Target{Host: testlab.DefaultHost, Port: port, IP: "127.0.0.1"}, Schedule: "@every 1s"})
		if err != nil {
			say("ERR add: %v", err)
			return 3
		}
		say("READY")
		select {}
	case "adder":
		// Add watches one after the other and acknowledge each that returned.
		for i := 0; i < 1000; i++ {
			w, err := m.Add(context.Background(), Spec{Target: probe.Target{Host: fmt.Sprintf("h%d.test", i), Port: port, IP: "127.0.0.1", Timeout: 2 * time.Second}, Schedule: "@every 10s"})
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

func startChild(t *testing.T, mode, db, rootsPEM string, port int) *child {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "TLSWATCH_TEST_DB="+db,
		"TLSWATCH_TEST_ROOTS="+rootsPEM, "TLSWATCH_TEST_PORT="+strconv.Itoa(port))
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
	})
	return c
}

func (c *child) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

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

func writeRoots(t *testing.T, p *testlab.PKI) string {
	path := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Two processes on one database: both answer, exactly one probes, and when
// the owner is SIGKILLed the other takes over within seconds.
func TestTwoProcessesHandover(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 5*24*time.Hour))
	db := dbPath(t)
	ctx := ctxT(t)

	owner := startChild(t, "owner", db, writeRoots(t, p), srv.Port)
	waitFor(t, 15*time.Second, "child to own and add", func() bool { return owner.count("READY") == 1 || owner.count("ERR") > 0 })
	if r := owner.with("ROLE "); len(r) != 1 || r[0] != "owner" {
		t.Fatalf("child role %v, errors %v", r, owner.with("ERR "))
	}

	var mine atomic.Int64
	m := openManager(t, testConfig(db, realProbe(p, &mine)))
	if m.Role() != "follower" {
		t.Fatalf("second process role %q, want follower", m.Role())
	}
	rec := &recorder{}
	m.Subscribe(rec)
	ws, err := m.List(ctx)
	if err != nil || len(ws) != 1 || ws[0].LastReport == nil {
		t.Fatalf("follower List: %+v, %v", ws, err)
	}
	// A follower's Add is probed by the owner, and the owner's events reach
	// the follower's subscribers.
	srv2 := serveLab(t, leafIn(p, 10*24*time.Hour))
	w2, err := m.Add(ctx, Spec{Target: srv2.target(0), Schedule: "@every 1s"})
	if err != nil || w2.LastReport == nil || w2.LastReport.ExpiryStage != "14d" {
		t.Fatalf("follower Add: %+v, %v", w2, err)
	}
	waitFor(t, 5*time.Second, "owner's events at the follower", func() bool {
		return rec.count(EventStageCrossed, "stage 14d") == 1 && rec.listChanges() >= 1
	})
	before := owner.count("PROBE")
	waitFor(t, 10*time.Second, "owner to keep probing", func() bool { return owner.count("PROBE") >= before+3 })
	if mine.Load() != 0 {
		t.Fatalf("the follower probed %d times", mine.Load())
	}
	if _, err := m.History(ctx, w2.ID, 5); err != nil {
		t.Fatalf("follower History: %v", err)
	}

	owner.kill(t)
	killed := time.Now()
	waitFor(t, 10*time.Second, "takeover", func() bool { return m.IsOwner() })
	t.Logf("takeover %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "new owner probing", func() bool { return mine.Load() >= 2 })
	ws, err = m.List(ctx)
	if err != nil || len(ws) != 2 {
		t.Fatalf("List after takeover: %d, %v", len(ws), err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := rec.count(EventStageCrossed, ""); n != 1 {
		t.Errorf("stage alerts after handover: %d, want 1 (no repeats):%s", n, rec.dump())
	}
}

// In one process two Managers on one file behave like two processes (flock
// is per open file): calls racing the owner's Close are retried, not failed.
func TestHandoverRetriesCalls(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	db := dbPath(t)
	ctx := ctxT(t)
	a := openManager(t, testConfig(db, realProbe(p, nil)))
	b := openManager(t, testConfig(db, realProbe(p, nil)))
	if !a.IsOwner() || b.Role() != "follower" {
		t.Fatalf("roles %q %q", a.Role(), b.Role())
	}
	w, err := b.Add(ctx, Spec{Target: srv.target(0)})
	if err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int64
	var calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Get(ctx, w.ID); err != nil {
					failures.Add(1)
					t.Errorf("Get during handover: %v", err)
				}
				calls.Add(1)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	a.Close()
	waitFor(t, 10*time.Second, "follower to take over", func() bool { return b.IsOwner() })
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() > 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d calls failed", failures.Load(), calls.Load())
	}
}

// A child adding watches is SIGKILLed mid-way: every watch whose Add had
// returned is present afterwards and the file opens cleanly.
func TestCrashWhileAdding(t *testing.T) {
	p := testlab.NewPKI(t)
	srv := serveLab(t, leafIn(p, 90*24*time.Hour))
	db := dbPath(t)
	c := startChild(t, "adder", db, writeRoots(t, p), srv.Port)
	// Kill mid-way: after 150 of the 1,000 adds (generous deadline: under
	// -race on a shared machine an add can take 100 ms).
	waitFor(t, 60*time.Second, "150 acknowledged adds", func() bool { return c.count("ACK ") >= 150 || c.count("ERR") > 0 })
	c.kill(t)
	if errs := c.with("ERR "); len(errs) > 0 {
		t.Fatalf("child errors: %v", errs)
	}
	acked := c.with("ACK ")
	s, err := store.Open(db, store.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	present := map[string]bool{}
	views, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		present[v.Record.ID] = v.LastReport != nil
	}
	s.Close()
	for _, id := range acked {
		if has, ok := present[id]; !ok || !has {
			t.Fatalf("acknowledged watch %s lost (present %v, with report %v)", id, ok, has)
		}
	}
	t.Logf("%d acknowledged, %d present after SIGKILL", len(acked), len(views))
	// And the watcher loads it.
	m := openManager(t, testConfig(db, realProbe(p, nil)))
	ws, err := m.List(ctxT(t))
	if err != nil || len(ws) < len(acked) {
		t.Fatalf("List after crash: %d, %v", len(ws), err)
	}
}
