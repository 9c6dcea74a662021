package tools

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/alert"
	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// webhookSink is a local webhook receiver that keeps the alerts it gets.
type webhookSink struct {
	URL    string
	mu     sync.Mutex
	alerts []alert.Alert
}

func newWebhookSink(t *testing.T) *webhookSink {
	s := &webhookSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alert.Alert
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &a); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		s.mu.Lock()
		s.alerts = append(s.alerts, a)
		s.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/hook"
	return s
}

// find returns the first alert received of kind in state.
func (s *webhookSink) find(kind, state string) (alert.Alert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.alerts, func(a alert.Alert) bool { return a.Kind == kind && a.State == state })
	if i < 0 {
		return alert.Alert{}, false
	}
	return s.alerts[i], true
}

// kinds lists the kinds of the alerts received, in order.
func (s *webhookSink) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.alerts {
		out = append(out, a.Kind)
	}
	return out
}

// mcpWatchEnv is the real engine on a bbolt file, on a fake clock, with the
// lab's trust store, alert delivery to sink, behind an MCP client.
func mcpWatchEnv(t *testing.T, pki *testlab.PKI, sink *webhookSink) (*harness, *watch.Engine, *watchtest.Clock) {
	db, err := store.Open(filepath.Join(t.TempDir(), "tlswatch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := alert.NewDispatcher(alert.Config{Alerts: alert.Alerts{Channels: []alert.Channel{
		{Name: "hook", Type: alert.TypeWebhook, URL: sink.URL}}}}, alert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := watchtest.NewClock(pki.Now)
	base := probe.Options{Roots: pki.Roots(), NoAIA: true, NoRevocation: true, NoLegacyProtocols: true, SingleAddress: true}
	eng, err := watch.NewEngine(db, watch.Config{Prober: &watch.Prober{Base: base}, Clock: clock, Hook: d.Attach(db.Outbox())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	delivered := make(chan struct{})
	go func() { d.Deliver(ctx); close(delivered) }()
	t.Cleanup(func() {
		cancel()
		<-delivered
		eng.Close()
		db.Close()
	})
	return newHarness(t, Deps{Watch: eng, ProbeOptions: base}, "2025-11-25"), eng, clock
}

// until advances the fake clock a minute at a time (the watch's schedule)
// until cond holds, failing after a generous real-time deadline.
func until(t *testing.T, clock *watchtest.Clock, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		clock.Advance(time.Minute)
		time.Sleep(5 * time.Millisecond)
	}
}

// notes collects what the client received, in order.
type notes struct {
	ch  <-chan mcp.JSONRPCNotification
	got []mcp.JSONRPCNotification
}

// toolsMessage drains what arrived and returns the index of the alert log
// message of an mcp_tools_changed event, or -1.
func (n *notes) toolsMessage() int {
	for {
		select {
		case x := <-n.ch:
			n.got = append(n.got, x)
		default:
			for i, x := range n.got {
				if data, ok := x.Params.AdditionalFields["data"].(map[string]any); ok && x.Method == "notifications/message" &&
					data["event"] == watch.EventToolsChanged {
					return i
				}
			}
			return -1
		}
	}
}

// updatedBefore lists the URIs of the resources/updated notifications
// that came right before the i-th notification.
func (n *notes) updatedBefore(i int) []string {
	var uris []string
	for j := i - 1; j >= 0 && n.got[j].Method == "notifications/resources/updated"; j-- {
		uris = append(uris, fmt.Sprint(n.got[j].Params.AdditionalFields["uri"]))
	}
	return uris
}

// An MCP-level watch end to end in one process: watch_endpoint with mcp
// through a real MCP client, the real engine and store, a live MCP server
// on loopback and alert delivery to a local webhook. When the server's tool
// list changes, the subscribers of the watch's resources are told, the
// Report of that probe has the finding, the alert feed (tlswatch://alerts)
// and the webhook say what changed; when the server stops answering MCP (TLS still fine), the watch
// goes down after the failure threshold and the webhook is told.
func TestMCPWatchEndToEnd(t *testing.T) {
	pki := testlab.NewPKI(t)
	lab := testlab.ServeMCP(t, pki, "drift", "echo", "fetch")
	sink := newWebhookSink(t)
	h, eng, clock := mcpWatchEnv(t, pki, sink)
	ctx := context.Background()

	// Subscribed to the list before the watch exists, and to alert log
	// messages from warning up.
	for _, err := range []error{
		h.c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: URIWatches}}),
		h.c.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelWarning}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	res := h.call("watch_endpoint", map[string]any{"target": lab.URL, "ip": "127.0.0.1", "mcp": true, "schedule": "@every 1m"})
	if res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	w := decode[watch.Watch](t, res)
	if m := w.MCP; !w.MCPLevel || m == nil || m.ToolCount != 2 || m.Server.Name != "drift" || w.MCPStats == nil || w.MCPStats.Probes != 1 {
		t.Fatalf("watch: mcp %+v, stats %+v", w.MCP, w.MCPStats)
	}
	if s := text(res); !strings.Contains(s, "MCP server drift 1.0.0") || !strings.Contains(s, "2 tools") || !strings.Contains(s, "uptime 100.0%") {
		t.Errorf("summary %q", s)
	}
	uri := WatchURI(w.ID)
	if err := h.c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}}); err != nil {
		t.Fatal(err)
	}

	lab.DeleteTools("fetch")
	lab.AddTool(mcp.NewTool("delete_everything", mcp.WithDescription("new")), testlab.EchoTool)
	n := &notes{ch: h.notes}
	until(t, clock, "the tools alert message", func() bool { return n.toolsMessage() >= 0 })
	// The notifier tells one Change at a time, its resources first, then
	// its alerts: the updates right before the message are the tool change's.
	i := n.toolsMessage()
	if got := n.updatedBefore(i); !slices.Contains(got, uri) || !slices.Contains(got, URIWatches) {
		t.Errorf("resources/updated before the tools message: %v (all: %+v)", got, n.got)
	}
	if data := n.got[i].Params.AdditionalFields["data"].(map[string]any); !strings.Contains(fmt.Sprint(data["tools_changed"]), "delete_everything") {
		t.Errorf("log message data %v", data)
	}
	// The Report of the probe that saw the change carries the finding (the
	// clock may have moved on to a later probe since: look in the history).
	hist := decode[History](t, h.call("get_history", map[string]any{"id": w.ID}))
	if !slices.ContainsFunc(hist.Changes, func(r watch.StoredReport) bool {
		return r.Report.MCP != nil && slices.ContainsFunc(r.Report.Findings, func(f probe.Finding) bool { return f.Code == probe.CodeMCPToolsChanged })
	}) {
		t.Errorf("no Report in the history has mcp_tools_changed: %+v", hist.Changes)
	}
	want := probe.ToolsChange{Added: []string{"delete_everything"}, Removed: []string{"fetch"}}
	rc, err := h.c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: URIAlerts}})
	if err != nil {
		t.Fatal(err)
	}
	var feed watch.AlertFeed
	if err := json.Unmarshal([]byte(rc.Contents[0].(mcp.TextResourceContents).Text), &feed); err != nil {
		t.Fatal(err)
	}
	fi := slices.IndexFunc(feed.Alerts, func(a watch.AlertEntry) bool { return a.Kind == watch.EventToolsChanged })
	if fi < 0 || !equalChange(feed.Alerts[fi].ToolsChanged, want) {
		t.Errorf("%s: %+v", URIAlerts, feed.Alerts)
	}
	var got alert.Alert
	waitFor(t, func() bool { var ok bool; got, ok = sink.find(watch.EventToolsChanged, watch.StateUp); return ok })
	if !equalChange(got.ToolsChanged, want) || got.Level != watch.LevelWarning || got.WatchID != w.ID || got.Action != alert.ActionNotify {
		t.Errorf("webhook alert %+v", got)
	}

	lab.StopMCP()
	until(t, clock, "the watch down", func() bool {
		g, err := eng.Get(ctx, w.ID)
		return err == nil && g.State == watch.StateDown
	})
	waitFor(t, func() bool { _, ok := sink.find(watch.EventStatusChanged, watch.StateDown); return ok })
	if a, _ := sink.find(watch.EventStatusChanged, watch.StateDown); a.Action != alert.ActionTrigger || !strings.Contains(a.Message, "not_mcp") {
		t.Errorf("down alert %+v", a)
	}
	// One alert for the tools change (the status change it caused is the
	// same news), a notice for the first failed probe (a warning), a
	// trigger for down.
	if k := sink.kinds(); !slices.Equal(k, []string{watch.EventToolsChanged, watch.EventStatusChanged, watch.EventStatusChanged}) {
		t.Errorf("webhook received %v", k)
	}
}

func equalChange(c *probe.ToolsChange, want probe.ToolsChange) bool {
	return c != nil && slices.Equal(c.Added, want.Added) && slices.Equal(c.Removed, want.Removed) && slices.Equal(c.Changed, want.Changed)
}

// An MCP-level watch of a protected endpoint names the operator's token:
// an unknown name is an error naming token_name; a known one is resolved
// by the probing process and sent, and even a server that echoes it back
// (in its server name) never gets it into the watch, its resource or the
// database file.
func TestMCPWatchTokenName(t *testing.T) {
	const secret = "watch-secret-4b1e77c09d2a"
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLSHandler(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}}, echoingMCP(secret, nil))
	_, port, _ := net.SplitHostPort(addr)
	url := "https://" + testlab.DefaultHost + ":" + port + "/mcp"

	dbPath := filepath.Join(t.TempDir(), "tlswatch.db")
	db, err := store.Open(dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := probe.Options{Roots: pki.Roots(), NoAIA: true, NoRevocation: true, NoLegacyProtocols: true, SingleAddress: true}
	pr := &watch.Prober{Base: base, Tokens: map[string]string{"prod": secret}, Redact: redact.New(secret)}
	eng, err := watch.NewEngine(db, watch.Config{Prober: pr, Clock: watchtest.NewClock(pki.Now), NoScheduler: true})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Deps{Watch: eng, ProbeOptions: base, MCPTokens: pr.Tokens, Redact: pr.Redact}, "2025-11-25")

	res := h.call("watch_endpoint", map[string]any{"target": url, "ip": "127.0.0.1", "mcp": true, "token_name": "staging"})
	if !res.IsError || !strings.Contains(text(res), "token_name") || !strings.Contains(text(res), "prod") {
		t.Errorf("unknown token name: %s", text(res))
	}
	res = h.call("watch_endpoint", map[string]any{"target": url, "ip": "127.0.0.1", "mcp": true, "token_name": "prod"})
	w := decode[watch.Watch](t, res)
	if res.IsError || w.MCP == nil || w.TokenName != "prod" || !strings.HasPrefix(w.MCP.Server.Name, "echo Bearer ") {
		t.Fatalf("watch with the token: %s", text(res))
	}
	rr := mcp.ReadResourceRequest{}
	rr.Params.URI = WatchURI(w.ID)
	rc, err := h.c.ReadResource(context.Background(), rr)
	if err != nil {
		t.Fatal(err)
	}
	shown := rc.Contents[0].(mcp.TextResourceContents).Text
	eng.Close()
	db.Close()
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"result": text(res) + mustString(t, res.StructuredContent), "resource": shown, "database": string(raw)} {
		if strings.Contains(s, secret) {
			t.Errorf("the token is in the %s", what)
		}
	}
}

func mustString(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
