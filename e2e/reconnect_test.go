package e2e

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	gosdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// Subscribers never go silent across a restart of `serve --http` on the
// same database and port: a 2025-11-25 client (mcp-go) is told on its next
// request that its session is gone, initializes again, subscribes again and
// keeps receiving updates; a 2026-07-28 client (the official Go SDK) has no
// session to lose, opens its subscription stream again and keeps receiving
// updates, and neither era ever gets notifications/message on a listen
// stream.

// rotate gives the lab's rotating server a new certificate (a new
// fingerprint: the watch's next probe reports a rotation).
func (l *lab) rotate() {
	l.rotating.Rotate(l.pki.Leaf(testlab.LeafOpts{NotAfter: l.pki.Now.Add(5 * 24 * time.Hour)}))
}

// restart stops serve and starts it again on the same address and database.
func restart(t *testing.T, l *lab, u string, stop func()) string {
	t.Helper()
	stop()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	u2, _ := startHTTPServerOn(t, pu.Host, l.serveArgs())
	return u2
}

func TestReconnectLegacyMCPGo(t *testing.T) {
	l := newLab(t)
	u, stop := startHTTPServer(t, l.serveArgs())
	c := httpClient(t, u, legacyVersion, transport.WithContinuousListening())
	ch := collect(c)
	id := addWatch(t, c, l)
	uri := "tlswatch://watches/" + id
	ctx := context.Background()
	if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}}); err != nil {
		t.Fatal(err)
	}
	l.rotate()
	ch.wait(t, "notifications/resources/updated", uri, 20*time.Second)

	restart(t, l, u, stop)
	_, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if !errors.Is(err, transport.ErrSessionTerminated) {
		t.Fatalf("first request after the restart: %v, want the session-terminated (404) error", err)
	}
	initialize(t, c)
	if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}}); err != nil {
		t.Fatalf("subscribe on the new session: %v", err)
	}
	l.rotate()
	ch.wait(t, "notifications/resources/updated", uri, 20*time.Second)
}

// sdkNotes records what the official Go SDK client hears.
type sdkNotes struct {
	mu      sync.Mutex
	updated map[string]int
	logs    int
	ch      chan string
}

func newSDKClient(n *sdkNotes) *gosdk.Client {
	return gosdk.NewClient(&gosdk.Implementation{Name: "tlswatch-e2e-gosdk", Version: "1"}, &gosdk.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, r *gosdk.ResourceUpdatedNotificationRequest) {
			n.mu.Lock()
			n.updated[r.Params.URI]++
			n.mu.Unlock()
			select {
			case n.ch <- r.Params.URI:
			default:
			}
		},
		LoggingMessageHandler: func(context.Context, *gosdk.LoggingMessageRequest) {
			n.mu.Lock()
			n.logs++
			n.mu.Unlock()
		},
	})
}

func (n *sdkNotes) wait(t *testing.T, uri string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case u := <-n.ch:
			if u == uri {
				return
			}
		case <-deadline:
			t.Fatalf("no resources/updated for %s within 20s", uri)
		}
	}
}

func sdkCall(t *testing.T, cs *gosdk.ClientSession, name string, args map[string]any) *gosdk.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &gosdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if res.IsError {
		t.Fatalf("%s: isError: %+v", name, res.Content)
	}
	return res
}

func TestReconnectModernGoSDK(t *testing.T) {
	l := newLab(t)
	u, stop := startHTTPServer(t, l.serveArgs())
	notes := &sdkNotes{updated: map[string]int{}, ch: make(chan string, 64)}
	ctx := context.Background()
	cs, err := newSDKClient(notes).Connect(ctx, &gosdk.StreamableClientTransport{Endpoint: u}, &gosdk.ClientSessionOptions{ProtocolVersion: modernVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	if v := cs.InitializeResult().ProtocolVersion; v != modernVersion {
		t.Fatalf("negotiated %s, want %s", v, modernVersion)
	}
	res := sdkCall(t, cs, "watch_endpoint", map[string]any{"target": hostTarget(l.rotating.Addr), "ip": "127.0.0.1", "schedule": "@every 1s"})
	w, _ := res.StructuredContent.(map[string]any)
	id, _ := w["id"].(string)
	if id == "" {
		t.Fatalf("watch_endpoint: %+v", res.StructuredContent)
	}
	uri := "tlswatch://watches/" + id

	// Subscribe opens a subscriptions/listen stream; Unsubscribe cancels it
	// with a notifications/cancelled that carries no _meta, which must not
	// cost the client its connection.
	sub := func() {
		t.Helper()
		if err := cs.Subscribe(ctx, &gosdk.SubscribeParams{URI: uri}); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	sub()
	l.rotate()
	notes.wait(t, uri)
	if err := cs.Unsubscribe(ctx, &gosdk.UnsubscribeParams{URI: uri}); err != nil {
		t.Fatal(err)
	}
	sdkCall(t, cs, "list_watches", nil)

	sub()
	restart(t, l, u, stop)
	// No session to lose: the next request works on the new process. The
	// stream of the old one ended; the client opens a new one.
	sdkCall(t, cs, "list_watches", nil)
	if err := cs.Unsubscribe(ctx, &gosdk.UnsubscribeParams{URI: uri}); err != nil {
		t.Fatal(err)
	}
	sub()
	// The new stream is open once the server acknowledged it; a rotation
	// after that is heard.
	waitListen(t, cs, uri, l, notes)

	notes.mu.Lock()
	defer notes.mu.Unlock()
	if notes.logs != 0 {
		t.Errorf("%d notifications/message reached a 2026-07-28 client", notes.logs)
	}
}

// waitListen rotates the certificate until an update arrives (the listen
// request is asynchronous in the Go SDK: a rotation may come before the
// server has the stream).
func waitListen(t *testing.T, cs *gosdk.ClientSession, uri string, l *lab, notes *sdkNotes) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l.rotate()
		select {
		case u := <-notes.ch:
			if u == uri {
				return
			}
		case <-time.After(3 * time.Second):
		}
	}
	t.Fatalf("no resources/updated for %s within 30s after re-subscribing", uri)
}
