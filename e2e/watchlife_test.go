package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// stoppable is a TLS server on a fixed loopback port that can be stopped
// and started again on the same port, so a watch sees its endpoint go away
// and come back.
type stoppable struct {
	t    *testing.T
	cfg  *tls.Config
	addr string
	mu   sync.Mutex
	ln   net.Listener
}

func newStoppable(t *testing.T, cfg *tls.Config) *stoppable {
	s := &stoppable{t: t, cfg: cfg}
	s.start("127.0.0.1:0")
	t.Cleanup(s.stop)
	return s
}

func (s *stoppable) start(addr string) {
	s.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; a TIME_WAIT or a slow close may keep
	// it busy briefly.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ln, err = tls.Listen("tcp", addr, s.cfg); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listen %s: %v", addr, err)
	}
	s.mu.Lock()
	s.ln, s.addr = ln, ln.Addr().String()
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
}

func (s *stoppable) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
}

// TestWatchDownAndUp: the server stops; after 3 failed probes the
// watch is down and its subscribers are told (resource update and a
// critical log message); the server returns; the watch is up and they are
// told again.
func TestWatchDownAndUp(t *testing.T) {
	l := newLab(t)
	srv := newStoppable(t, &tls.Config{Certificates: []tls.Certificate{l.pki.Leaf(testlab.LeafOpts{})}})
	c := stdioClient(t, legacyVersion, l.serveArgs())
	ch := collect(c)
	if err := c.SetLevel(context.Background(), setLevel(mcp.LoggingLevelInfo)); err != nil {
		t.Fatalf("logging/setLevel: %v", err)
	}

	res := call(t, c, "watch_endpoint", map[string]any{"target": hostTarget(srv.addr), "ip": "127.0.0.1", "schedule": "@every 1s"})
	if res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	w := structured(t, res)
	id := w["id"].(string)
	if w["state"] != "up" || w["last_report"].(map[string]any)["status"] != "ok" {
		t.Fatalf("first probe: state %v report %v", w["state"], w["last_report"])
	}
	uri := "tlswatch://watches/" + id
	subscribe(t, c, uri)

	srv.stop()
	waitState(t, c, ch, id, uri, "down", 30*time.Second)
	got := getWatch(t, c, id)
	if n, _ := got["consecutive_failures"].(float64); n < 3 {
		t.Errorf("down after %v consecutive failures, want at least 3", got["consecutive_failures"])
	}
	if st := got["last_report"].(map[string]any)["status"]; st != "down" {
		t.Errorf("last_report.status = %v, want down", st)
	}

	srv.start(srv.addr)
	waitState(t, c, ch, id, uri, "up", 30*time.Second)
	if got := getWatch(t, c, id); got["consecutive_failures"] != float64(0) {
		t.Errorf("consecutive_failures after recovery = %v", got["consecutive_failures"])
	}
}

// waitState waits for a resources/updated of uri after which the watch is
// in state, and for the alert log message that goes with the transition.
func waitState(t *testing.T, c *client.Client, ch notes, id, uri, state string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	sawUpdate, sawLog := false, false
	for time.Now().Before(deadline) && !(sawUpdate && sawLog) {
		select {
		case n := <-ch:
			switch {
			case n.Method == "notifications/resources/updated" && n.Params.AdditionalFields["uri"] == uri:
				if getWatch(t, c, id)["state"] == state {
					sawUpdate = true
				}
			case n.Method == "notifications/message":
				lvl := fmt.Sprint(n.Params.AdditionalFields["level"])
				if state == "down" && lvl == "critical" || state == "up" && lvl != "" {
					sawLog = true
				}
			}
		case <-time.After(time.Until(deadline)):
		}
	}
	if !sawUpdate {
		t.Fatalf("no notifications/resources/updated for %s with state %s within %s (watch: %v)", uri, state, within, getWatch(t, c, id))
	}
	if !sawLog {
		t.Errorf("no alert log message (notifications/message) for the %s transition", state)
	}
}

// TestKillWhileAdding1000 (crash): a serve process is killed with
// SIGKILL while clients add 1,000 watches (each probed on add and every few
// seconds); after a restart the database opens and every watch whose
// watch_endpoint call had answered is there.
func TestKillWhileAdding1000(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	l := newLab(t)
	// One wildcard server answers every watch's host name.
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{
		l.pki.Leaf(testlab.LeafOpts{DNSNames: []string{"*." + testlab.DefaultHost}}),
	}})
	_, port, _ := net.SplitHostPort(addr)

	p, err := launchServe(l.serveArgs())
	if err != nil {
		t.Fatal(err)
	}
	const total, workers = 1000, 8
	var (
		mu    sync.Mutex
		acked = map[string]string{} // id -> host
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	killAt := int64(250) // acknowledgements before the kill
	killed := make(chan struct{})
	var once sync.Once
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.dial(ctx)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				host := fmt.Sprintf("w%04d.%s", i, testlab.DefaultHost)
				out, err := callTool(ctx, c, "watch_endpoint", map[string]any{
					"target": host + ":" + port, "ip": "127.0.0.1", "schedule": "@every 3s",
				})
				if err != nil {
					select {
					case <-killed:
						return // the server is gone: unacknowledged
					default:
					}
					t.Errorf("watch_endpoint %s before the kill: %v", host, err)
					return
				}
				mu.Lock()
				acked[out["id"].(string)] = host
				n := int64(len(acked))
				mu.Unlock()
				if n >= killAt {
					once.Do(func() { close(killed); p.kill() })
				}
			}
		}()
	}
	wg.Wait()
	once.Do(func() { close(killed); p.kill() })
	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked < int(killAt) {
		t.Fatalf("only %d watches acknowledged before the kill:\n%s", nAcked, p.logs.String())
	}
	t.Logf("killed serve after %d acknowledged watch_endpoint calls", nAcked)

	p2 := startServe(t, l.serveArgs())
	c, err := p2.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ws, err := allWatches(ctx, c)
	if err != nil {
		t.Fatalf("list_watches after restart: %v", err)
	}
	listed := map[string]string{}
	for _, w := range ws {
		listed[w["id"].(string)] = w["target"].(map[string]any)["host"].(string)
	}
	lost := 0
	for id, host := range acked {
		if listed[id] != host {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged watch %s (%s) missing after SIGKILL and restart", id, host)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged watches lost", lost, nAcked)
	}
}

func setLevel(l mcp.LoggingLevel) mcp.SetLevelRequest {
	req := mcp.SetLevelRequest{}
	req.Params.Level = l
	return req
}

// getWatch reads the watch's resource, the view its subscribers get.
func getWatch(t *testing.T, c *client.Client, id string) map[string]any {
	t.Helper()
	res := call(t, c, "list_watches", map[string]any{})
	for _, w := range structured(t, res)["watches"].([]any) {
		if w := w.(map[string]any); w["id"] == id {
			return w
		}
	}
	t.Fatalf("watch %s not listed: %s", id, text(res))
	return nil
}
