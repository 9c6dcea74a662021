package e2e

import (
	"bufio"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/alert"
	"github.com/tlswatch/tlswatch/watch"
)

// --- a serve process the test can SIGKILL ---

// serveProc is a `tlswatch serve --http 127.0.0.1:0` child. Unlike
// startHTTPServer it can be killed without a clean exit, and it does not
// fail the test from its own goroutines.
type serveProc struct {
	cmd    *exec.Cmd
	url    string // the MCP endpoint, http://127.0.0.1:PORT/mcp
	logs   *syncBuffer
	done   chan struct{}
	err    error // of cmd.Wait, once done is closed
	exited sync.Once
}

var mcpURLRE = regexp.MustCompile(`url=(http://\S+/mcp)`)

// startServe starts serve with args (plus --http) and waits for its URL.
// Cleanup kills it if the test has not stopped it.
func startServe(t *testing.T, args []string) *serveProc {
	t.Helper()
	p, err := launchServe(args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("serve stderr (%s):\n%s", p.url, p.logs.String())
		}
	})
	return p
}

func launchServe(args []string) (*serveProc, error) {
	cmd := exec.Command(binary, append(append([]string(nil), args...), "--http", "127.0.0.1:0")...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	p := &serveProc{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start serve: %w", err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			if m := mcpURLRE.FindStringSubmatch(line); m != nil {
				select {
				case urlc <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	select {
	case p.url = <-urlc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("serve exited before serving (%v):\n%s", p.err, p.logs.String())
	case <-time.After(20 * time.Second):
		p.kill()
		return nil, fmt.Errorf("serve did not log its URL within 20s:\n%s", p.logs.String())
	}
}

// kill sends SIGKILL (what a crash looks like to the database) and waits.
func (p *serveProc) kill() {
	p.exited.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// stop is a graceful SIGINT; it reports a slow or failed exit.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	p.exited.Do(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
			if p.err != nil {
				t.Errorf("serve did not exit cleanly on SIGINT: %v", p.err)
			}
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Error("serve did not stop within 15s of SIGINT")
		}
	})
}

// raced reports a data race the race-built binary printed.
func (p *serveProc) raced() bool { return strings.Contains(p.logs.String(), "WARNING: DATA RACE") }

// dial connects an MCP client to p without tying its life to the test, for
// clients of processes that are about to be killed.
func (p *serveProc) dial(ctx context.Context) (*client.Client, error) {
	tr, err := transport.NewStreamableHTTP(p.url)
	if err != nil {
		return nil, err
	}
	c := client.NewClient(tr, client.WithProtocolVersion(legacyVersion))
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("start client: %w", err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "tlswatch-e2e", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	return c, nil
}

// callTool is call without t: it returns protocol errors (a killed server)
// and tool errors alike.
func callTool(ctx context.Context, c *client.Client, name string, args map[string]any) (map[string]any, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.IsError {
		return nil, fmt.Errorf("%s: isError: %s", name, text(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: structuredContent: %w", name, err)
	}
	return m, nil
}

// --- a webhook receiver ---

// delivery is one request the receiver got.
type delivery struct {
	id     string // X-Tlswatch-Delivery
	sigOK  bool   // X-Tlswatch-Signature is the HMAC of the body
	status int    // what the receiver answered
	alert  alert.Alert
}

// receiver is a local webhook endpoint that records every delivery, checks
// its signature, and answers 503 while down.
type receiver struct {
	t      *testing.T
	secret []byte
	srv    *httptest.Server

	mu    sync.Mutex
	down  bool
	flaky func() bool // when set and true, this request is answered 503
	all   []delivery
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: []byte(secret)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	d := delivery{
		id:    req.Header.Get(alert.HeaderDelivery),
		sigOK: hmac.Equal([]byte(req.Header.Get(alert.HeaderSignature)), []byte(alert.Sign(r.secret, body))),
	}
	if err := json.Unmarshal(body, &d.alert); err != nil {
		d.alert.Kind = "unparseable: " + err.Error()
	}
	r.mu.Lock()
	d.status = http.StatusOK
	if r.down || (r.flaky != nil && r.flaky()) {
		d.status = http.StatusServiceUnavailable
	}
	r.all = append(r.all, d)
	r.mu.Unlock()
	w.WriteHeader(d.status)
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// accepted returns the deliveries answered 200, in arrival order.
func (r *receiver) accepted() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.all {
		if d.status == http.StatusOK {
			out = append(out, d)
		}
	}
	return out
}

func (r *receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// stageAlerts returns the accepted stage_crossed deliveries of a watch.
func (r *receiver) stageAlerts(watchID string) []delivery {
	var out []delivery
	for _, d := range r.accepted() {
		if d.alert.Kind == "stage_crossed" && d.alert.WatchID == watchID {
			out = append(out, d)
		}
	}
	return out
}

// waitStage waits for the first stage alert of a watch.
func (r *receiver) waitStage(t *testing.T, watchID string, within time.Duration) delivery {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ds := r.stageAlerts(watchID); len(ds) > 0 {
			return ds[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no stage_crossed webhook for %s within %s (%d requests received)", watchID, within, r.requests())
	return delivery{}
}

// alertConfig writes an operator config with one signed webhook channel
// and quick retries (the defaults start at 1s and grow to 5m).
func alertConfig(t *testing.T, dir, url, secret string) string {
	t.Helper()
	path := filepath.Join(dir, "tlswatch.yaml")
	cfg := fmt.Sprintf(`alerts:
  min_level: warning
  retry: {initial_backoff: 100ms, max_backoff: 500ms, give_up_after: 1h}
  channels:
    - name: hook
      type: webhook
      url: %s
      secret: %q
`, url, secret)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkStageAlert checks the contract of a 7d stage webhook for a watch.
func checkStageAlert(t *testing.T, d delivery, watchID string) {
	t.Helper()
	a := d.alert
	if !d.sigOK {
		t.Errorf("delivery %s: X-Tlswatch-Signature does not verify", d.id)
	}
	if d.id == "" || d.id != a.ID {
		t.Errorf("delivery id header %q, body id %q", d.id, a.ID)
	}
	if a.Kind != "stage_crossed" || a.ExpiryStage != "7d" || a.WatchID != watchID || a.Action != alert.ActionTrigger ||
		a.Level != watch.LevelCritical || a.Fingerprint == "" || a.DaysRemaining == nil || *a.DaysRemaining > 5 {
		t.Errorf("stage alert: %+v", a)
	}
}

// waitNoMore watches for d more: every probe runs @every 1s, so a few
// seconds give a repeat every chance to happen.
func noRepeat(t *testing.T, r *receiver, watchID string, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if ds := r.stageAlerts(watchID); len(ds) != 1 {
		t.Errorf("stage alert delivered %d times, want once: %+v", len(ds), ds)
	}
}

// TestWebhookStageAlertOnce: a 5-day certificate watched @every 1s gives one
// signed stage_crossed webhook (7d); SIGKILL and restart do not send it
// again.
func TestWebhookStageAlertOnce(t *testing.T) {
	l := newLab(t)
	const secret = "e2e-webhook-secret"
	r := newReceiver(t, secret)
	args := l.serveArgs("--config", alertConfig(t, l.dir, r.srv.URL, secret))

	p := startServe(t, args)
	c := httpClient(t, p.url, legacyVersion)
	id := addWatch(t, c, l)
	d := r.waitStage(t, id, 15*time.Second)
	checkStageAlert(t, d, id)
	noRepeat(t, r, id, 3*time.Second)
	p.kill()

	p2 := startServe(t, args)
	c2 := httpClient(t, p2.url, legacyVersion)
	// The restarted owner probes the watch again (overdue, within 1s).
	waitProbed(t, c2, id, time.Now(), 10*time.Second)
	noRepeat(t, r, id, 3*time.Second)
	p2.stop(t)
	if p.raced() || p2.raced() {
		t.Error("the race detector fired in serve")
	}
}

// waitProbed waits until the watch's last probe is after since.
func waitProbed(t *testing.T, c *client.Client, id string, since time.Time, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		res := call(t, c, "list_watches", map[string]any{})
		for _, w := range structured(t, res)["watches"].([]any) {
			w := w.(map[string]any)
			if w["id"] != id {
				continue
			}
			if s, _ := w["last_checked_at"].(string); s != "" {
				if at, err := time.Parse(time.RFC3339Nano, s); err == nil && at.After(since) {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("watch %s not probed since %s within %s", id, since.Format(time.RFC3339Nano), within)
}

// TestWebhookReceiverDownAtFirst: the receiver answers 503 at first; the
// alert waits in the outbox and arrives once, after it comes back.
func TestWebhookReceiverDownAtFirst(t *testing.T) {
	l := newLab(t)
	const secret = "e2e-webhook-secret"
	r := newReceiver(t, secret)
	r.setDown(true)
	p := startServe(t, l.serveArgs("--config", alertConfig(t, l.dir, r.srv.URL, secret)))
	c := httpClient(t, p.url, legacyVersion)
	id := addWatch(t, c, l)

	// Let it fail several times (backoff 100ms, 200ms, 400ms, 500ms...).
	deadline := time.Now().Add(15 * time.Second)
	for r.requests() < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := r.requests(); n < 3 {
		t.Fatalf("only %d delivery attempts while the receiver was down", n)
	}
	if len(r.accepted()) != 0 {
		t.Fatal("accepted while down")
	}
	r.setDown(false)
	d := r.waitStage(t, id, 15*time.Second)
	checkStageAlert(t, d, id)
	noRepeat(t, r, id, 3*time.Second)
	p.stop(t)
}

// TestWebhookTwoProcesses: two serve on one database (owner and follower)
// deliver the stage alert exactly once, also after the owner is killed and
// the follower takes over.
func TestWebhookTwoProcesses(t *testing.T) {
	l := newLab(t)
	const secret = "e2e-webhook-secret"
	r := newReceiver(t, secret)
	args := l.serveArgs("--config", alertConfig(t, l.dir, r.srv.URL, secret))
	a := startServe(t, args)
	b := startServe(t, args)
	cb := httpClient(t, b.url, legacyVersion)
	id := addWatch(t, cb, l) // through the follower
	checkStageAlert(t, r.waitStage(t, id, 15*time.Second), id)
	noRepeat(t, r, id, 3*time.Second)

	a.kill()
	waitProbed(t, cb, id, time.Now().Add(500*time.Millisecond), 15*time.Second)
	noRepeat(t, r, id, 3*time.Second)
	b.stop(t)
}
