package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	gosdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/watch"
)

// Subscribers never go silent across a restart of `serve --http` on the
// same database and port: a 2025-11-25 client (mcp-go) is told on its next
// request that its session is gone, initializes again, subscribes again and
// keeps receiving updates; a 2026-07-28 client (the official Go SDK) has no
// session to lose, opens its subscription stream again and keeps receiving
// updates, and neither era ever gets notifications/message on a listen
// stream. What happened while a client was away it reads from the alert
// feed, tlswatch://alerts?after=CURSOR, with the cursor of its last read.

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
	subscribe := func() {
		t.Helper()
		for _, u := range []string{uri, alertsURI} {
			if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: u}}); err != nil {
				t.Fatalf("subscribe %s: %v", u, err)
			}
		}
	}
	subscribe()
	l.rotate()
	ch.waitAll(t, 20*time.Second, note{"notifications/resources/updated", uri}, note{"notifications/resources/updated", alertsURI})
	read := func(uri string) alertFeed { return decodeFeed(t, readText(t, c, uri)) }
	seen := waitFeed(t, read, "", id, watch.EventRotated)

	restart(t, l, u, stop)
	l.rotate() // while the client is away
	_, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if !errors.Is(err, transport.ErrSessionTerminated) {
		t.Fatalf("first request after the restart: %v, want the session-terminated (404) error", err)
	}
	initialize(t, c)
	subscribe()
	missed := waitFeed(t, read, seen.Next, id, watch.EventRotated)
	for _, a := range missed.Alerts {
		if a.ID == seen.Next || a.Kind == watch.EventWatchAdded {
			t.Errorf("the feed after %s repeats %+v", seen.Next, a)
		}
	}
	l.rotate()
	ch.waitAll(t, 20*time.Second, note{"notifications/resources/updated", uri}, note{"notifications/resources/updated", alertsURI})
	waitFeed(t, read, missed.Next, id, watch.EventRotated)
}

const alertsURI = "tlswatch://alerts"

// alertFeed is what tlswatch://alerts holds (watch.AlertFeed as a client
// sees it).
type alertFeed struct {
	Alerts []struct {
		ID      string `json:"id"`
		Kind    string `json:"kind"`
		WatchID string `json:"watch_id"`
	} `json:"alerts"`
	Next string `json:"next"`
}

func decodeFeed(t *testing.T, text string) alertFeed {
	t.Helper()
	var f alertFeed
	if err := json.Unmarshal([]byte(text), &f); err != nil || f.Next == "" {
		t.Fatalf("alert feed %.300q: %v", text, err)
	}
	return f
}

func readText(t *testing.T, c *client.Client, uri string) string {
	t.Helper()
	res, err := c.ReadResource(context.Background(), mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: uri}})
	if err != nil || len(res.Contents) != 1 {
		t.Fatalf("read %s: %+v, %v", uri, res, err)
	}
	tc, ok := res.Contents[0].(mcp.TextResourceContents)
	if !ok {
		t.Fatalf("read %s: %T", uri, res.Contents[0])
	}
	return tc.Text
}

// waitFeed reads the feed after cursor until it holds an event of kind
// for watch id (the watcher commits it after its next probe) and returns
// that page.
func waitFeed(t *testing.T, read func(string) alertFeed, after, id, kind string) alertFeed {
	t.Helper()
	uri := alertsURI
	if after != "" {
		uri += "?after=" + url.QueryEscape(after)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		f := read(uri)
		for _, a := range f.Alerts {
			if a.WatchID == id && a.Kind == kind {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s in %s within 20s: %+v", kind, id, uri, f)
		}
		time.Sleep(200 * time.Millisecond)
	}
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
	sub := func(uris ...string) {
		t.Helper()
		for _, u := range uris {
			if err := cs.Subscribe(ctx, &gosdk.SubscribeParams{URI: u}); err != nil {
				t.Fatalf("subscribe %s: %v", u, err)
			}
		}
	}
	unsub := func(uris ...string) {
		t.Helper()
		for _, u := range uris {
			if err := cs.Unsubscribe(ctx, &gosdk.UnsubscribeParams{URI: u}); err != nil {
				t.Fatalf("unsubscribe %s: %v", u, err)
			}
		}
	}
	read := func(uri string) alertFeed {
		t.Helper()
		res, err := cs.ReadResource(ctx, &gosdk.ReadResourceParams{URI: uri})
		if err != nil || len(res.Contents) != 1 {
			t.Fatalf("read %s: %+v, %v", uri, res, err)
		}
		return decodeFeed(t, res.Contents[0].Text)
	}
	sub(uri)
	l.rotate()
	notes.wait(t, uri)
	unsub(uri)
	sdkCall(t, cs, "list_watches", nil)

	sub(uri, alertsURI)
	waitListen(t, cs, alertsURI, l, notes)
	seen := waitFeed(t, read, "", id, watch.EventRotated)
	restart(t, l, u, stop)
	l.rotate() // while the client's streams are gone
	// No session to lose: the next request works on the new process. The
	// streams of the old one ended; the client opens new ones, and reads
	// what it missed from the feed.
	sdkCall(t, cs, "list_watches", nil)
	unsub(uri, alertsURI)
	missed := waitFeed(t, read, seen.Next, id, watch.EventRotated)
	sub(uri, alertsURI)
	// The new streams are open once the server acknowledged them; a
	// rotation after that is heard.
	waitListen(t, cs, alertsURI, l, notes)
	waitFeed(t, read, missed.Next, id, watch.EventRotated)

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
