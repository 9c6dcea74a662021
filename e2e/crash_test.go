package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/store"
)

// TestCrashHarness (crash safety): serve is killed with SIGKILL at random
// moments, 20 times, while a client adds watches, the watches are probed
// @every 1s, their certificate rotates shortly before each kill, and alerts
// are delivered to a local webhook that fails one request in ten. After each
// restart the database opens and every watch whose watch_endpoint call was
// answered is listed. At the end, every stage alert the watcher recorded
// (one per watch and certificate it saw, read back from get_history) has
// arrived exactly once: duplicates are counted by (watch, stage,
// fingerprint) over distinct delivery ids; a redelivery with the same
// X-Tlswatch-Delivery id is the documented at-least-once window and only
// logged. The durable alert feed holds each of those stage alerts, and each
// watch's creation, exactly once too.
//
// The kill schedule is seeded; TLSWATCH_CRASH_SEED=N replays one.
func TestCrashHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("crash harness: skipped in -short mode")
	}
	const (
		rounds        = 20
		watchesPerRnd = 3
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TLSWATCH_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TLSWATCH_CRASH_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("crash harness seed %d (replay with TLSWATCH_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	l := newLab(t)
	// One server for every watch: each watch is its own host name under a
	// wildcard certificate, dialled at 127.0.0.1.
	leaf := func() tls.Certificate {
		return l.pki.Leaf(testlab.LeafOpts{DNSNames: []string{"*." + testlab.DefaultHost}, NotAfter: l.pki.Now.Add(5 * 24 * time.Hour)})
	}
	srv := testlab.ServeRotating(t, leaf())
	_, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}

	const secret = "crash-harness-secret"
	r := newReceiver(t, secret)
	// One request in ten fails (503), so retries and backoff are in flight
	// when the kills land too. Called under the receiver's lock.
	flakyRNG := rand.New(rand.NewPCG(seed, 7))
	r.flaky = func() bool { return flakyRNG.IntN(10) == 0 }
	args := l.serveArgs("--config", alertConfig(t, l.dir, r.srv.URL, secret))

	acked := map[string]string{} // watch id -> host
	next := 0
	var procs []*serveProc
	start := time.Now()
	for round := 0; round < rounds; round++ {
		p, err := launchServe(args)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		procs = append(procs, p)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c, err := p.dial(ctx)
		if err != nil {
			cancel()
			p.kill()
			t.Fatalf("round %d: %v\n%s", round, err, p.logs.String())
		}
		// The database opened and every acknowledged watch survived.
		ws, err := allWatches(ctx, c)
		if err != nil {
			cancel()
			p.kill()
			t.Fatalf("round %d: list_watches after restart: %v\n%s", round, err, p.logs.String())
		}
		listed := map[string]bool{}
		for _, w := range ws {
			listed[w["id"].(string)] = true
		}
		for id, host := range acked {
			if !listed[id] {
				t.Errorf("round %d: acknowledged watch %s (%s) lost after SIGKILL", round, id, host)
			}
		}
		// Add watches concurrently and kill at a random moment meanwhile.
		killAfter := time.Duration(100+rng.IntN(1100)) * time.Millisecond
		// A renewal shortly before the kill: every watch sees a new
		// fingerprint at its next probe (within 1s), so the kill often
		// lands while scheduled probes are committing stage alerts, not
		// only while watch_endpoint calls are.
		rotateAfter := time.Duration(rng.Int64N(int64(killAfter)))
		rotated := time.AfterFunc(rotateAfter, func() { srv.Rotate(leaf()) })
		hosts := make([]string, watchesPerRnd)
		for i := range hosts {
			hosts[i] = fmt.Sprintf("c%03d.%s", next, testlab.DefaultHost)
			next++
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		killed := make(chan struct{})
		for _, host := range hosts {
			wg.Go(func() {
				// Spread the calls over the round so kills land before,
				// during and after them.
				select {
				case <-time.After(time.Duration(callDelay(seed, host)) * time.Millisecond):
				case <-killed:
					return // never sent: the server is gone
				}
				w, err := callTool(ctx, c, "watch_endpoint", map[string]any{
					"target": host + ":" + port, "ip": "127.0.0.1", "schedule": "@every 1s",
				})
				if err != nil {
					return // not acknowledged: the kill came first
				}
				mu.Lock()
				acked[w["id"].(string)] = host
				mu.Unlock()
			})
		}
		time.Sleep(killAfter)
		p.kill()
		close(killed)
		rotated.Stop()
		wg.Wait()
		cancel()
		c.Close()
		mu.Lock()
		t.Logf("round %2d: rotated after %v, killed after %v; %d watches acknowledged so far", round, rotateAfter.Round(time.Millisecond), killAfter, len(acked))
		mu.Unlock()
	}

	// Final run: no kill. Every alert the watcher recorded must arrive.
	p := startServe(t, args)
	procs = append(procs, p)
	c := httpClient(t, p.url, legacyVersion)
	ws, err := allWatches(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, w := range ws {
		listed[w["id"].(string)] = true
	}
	for id, host := range acked {
		if !listed[id] {
			t.Errorf("final: acknowledged watch %s (%s) lost", id, host)
		}
	}
	if len(acked) < rounds/2 {
		t.Errorf("only %d watches acknowledged in %d rounds: the harness did not exercise much", len(acked), rounds)
	}
	// Let every watch probe the current certificate.
	time.Sleep(3 * time.Second)

	deadline := time.Now().Add(30 * time.Second)
	var missing []crashKey
	var expected map[crashKey]bool
	for {
		// What the watcher recorded: one stage alert per certificate a
		// watch saw (all are 5-day certificates: stage 7d). The history
		// and the alert's outbox entry commit in one transaction.
		expected = map[crashKey]bool{}
		for id := range listed {
			h := structured(t, call(t, c, "get_history", map[string]any{"id": id, "since": "30d"}))
			for _, stored := range h["changes"].([]any) {
				rep, _ := stored.(map[string]any)["report"].(map[string]any)
				leaf, _ := rep["leaf"].(map[string]any)
				if fp, _ := leaf["sha256"].(string); fp != "" {
					expected[crashKey{id, "7d", fp}] = true
				}
			}
		}
		got := map[crashKey]bool{}
		for _, d := range r.accepted() {
			if d.alert.Kind == "stage_crossed" {
				got[crashKey{d.alert.WatchID, d.alert.ExpiryStage, d.alert.Fingerprint}] = true
			}
		}
		missing = missing[:0]
		for k := range expected {
			if !got[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].watch < missing[j].watch })
	for _, k := range missing {
		t.Errorf("lost: stage alert %s of watch %s for certificate %.16s never delivered", k.stage, k.watch, k.fp)
	}

	// No alert twice: distinct delivery ids per (watch, stage, fingerprint).
	byKey := map[crashKey]map[string]bool{}
	otherOnce := map[[3]string]map[string]bool{} // kind, watch, fingerprint -> delivery ids
	redelivered := 0
	seen := map[string]bool{}
	for _, d := range r.accepted() {
		if !d.sigOK {
			t.Errorf("delivery %s: bad signature", d.id)
		}
		if seen[d.id] {
			redelivered++
		}
		seen[d.id] = true
		if !listed[d.alert.WatchID] {
			t.Errorf("%s alert for watch %s, which is not in the database", d.alert.Kind, d.alert.WatchID)
		}
		// Two other alerts happen once each too: a watch's first "is up"
		// (pending -> up), and the news of each rotation to a certificate.
		var once [3]string
		switch {
		case d.alert.Kind == "rotated":
			once = [3]string{d.alert.Kind, d.alert.WatchID, d.alert.Fingerprint}
		case d.alert.Kind == "status_changed" && strings.Contains(d.alert.Message, " is up (status"):
			once = [3]string{d.alert.Kind, d.alert.WatchID, ""}
		}
		if once[0] != "" {
			if otherOnce[once] == nil {
				otherOnce[once] = map[string]bool{}
			}
			otherOnce[once][d.id] = true
		}
		if d.alert.Kind != "stage_crossed" {
			continue
		}
		k := crashKey{d.alert.WatchID, d.alert.ExpiryStage, d.alert.Fingerprint}
		if byKey[k] == nil {
			byKey[k] = map[string]bool{}
		}
		byKey[k][d.id] = true
	}
	for k, ids := range otherOnce {
		if len(ids) > 1 {
			t.Errorf("duplicate: %s alert of watch %s (certificate %.16s) delivered %d times", k[0], k[1], k[2], len(ids))
		}
	}
	for k, ids := range byKey {
		if len(ids) > 1 {
			t.Errorf("duplicate: stage alert %s of watch %s for %.16s delivered %d times (ids %v)", k.stage, k.watch, k.fp, len(ids), ids)
		}
		if !expected[k] {
			t.Errorf("stage alert %s of watch %s for %.16s delivered but not in the watch's history", k.stage, k.watch, k.fp)
		}
	}
	p.stop(t)
	checkFeed(t, filepath.Join(l.dir, "tlswatch.db"), listed, expected)
	for i, p := range procs {
		if p.raced() {
			t.Errorf("process %d: the race detector fired:\n%s", i, p.logs.String())
		}
	}
	t.Logf("%d watches (%d acknowledged), %d stage alerts expected and delivered once each, %d webhook requests, %d redelivered with the same id; %s",
		len(listed), len(acked), len(expected), r.requests(), redelivered, time.Since(start).Round(time.Millisecond))
}

// crashKey is one stage alert: watch, stage and certificate fingerprint.
type crashKey struct{ watch, stage, fp string }

// callDelay is a per-call delay derived from the seed (the goroutines must
// not share the harness's rng), so a seed replays the same interleaving of
// calls and kills as closely as the scheduler allows.
func callDelay(seed uint64, host string) int {
	h := seed
	for _, c := range host {
		h = h*1099511628211 + uint64(c)
	}
	return int(h % 900)
}

// checkFeed reads the alert feed of the database serve left behind: each
// recorded stage alert (watch, fingerprint) is in it exactly once, and so
// is the creation of each watch.
func checkFeed(t *testing.T, path string, listed map[string]bool, expected map[crashKey]bool) {
	t.Helper()
	db, err := store.Open(path, store.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open the database for its feed: %v", err)
	}
	defer db.Close()
	page, err := db.Feed(0, store.FeedKeep)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[crashKey]int{}
	added := map[string]int{}
	var last uint64
	for _, e := range page.Entries {
		if e.Seq <= last {
			t.Errorf("feed sequence %d after %d", e.Seq, last)
		}
		last = e.Seq
		switch e.Kind {
		case "stage_crossed":
			_, fp, _ := strings.Cut(e.Message, "(sha256 ")
			stages[crashKey{e.WatchID, e.ExpiryStage, strings.TrimSuffix(fp, ")")}]++
		case "watch_added":
			added[e.WatchID]++
		}
	}
	for k := range expected {
		short := crashKey{k.watch, k.stage, k.fp[:16]}
		if n := stages[short]; n != 1 {
			t.Errorf("feed: stage alert %s of watch %s for %.16s recorded %d times, want once", k.stage, k.watch, k.fp, n)
		}
		delete(stages, short)
	}
	for k, n := range stages {
		t.Errorf("feed: stage alert %s of watch %s for %s (%d times) not in the watch's history", k.stage, k.watch, k.fp, n)
	}
	for id := range listed {
		if added[id] != 1 {
			t.Errorf("feed: watch %s added %d times, want once", id, added[id])
		}
	}
	t.Logf("alert feed: %d entries, %d stage alerts", len(page.Entries), len(expected))
}
