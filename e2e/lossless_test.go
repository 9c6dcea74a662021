package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	gosdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestEveryNotificationArrives: a subscriber hears each change exactly
// once, however the change lines up with the request that caused it. Each
// watch_endpoint and unwatch_endpoint sends its notifications as its
// response goes out, the moment a notification used to be lost over HTTP
// (mcp-go's POST reader dropped what it took as its request ended, about
// one call in five). So: many calls in a row, each followed by a check that
// exactly one list_changed and one update of each subscribed URI arrived,
// on each transport and era. A lost notification fails its round within the
// deadline; a duplicate shows up as a second copy in the same or the next
// round.
func TestEveryNotificationArrives(t *testing.T) {
	const rounds = 25
	for _, c := range []struct {
		name  string
		start func(t *testing.T, l *lab) *client.Client
	}{
		{"http-2025-11-25", func(t *testing.T, l *lab) *client.Client {
			return httpClient(t, httpServer(t, l.serveArgs()), legacyVersion, transport.WithContinuousListening())
		}},
		{"http-2026-07-28-listen", func(t *testing.T, l *lab) *client.Client {
			return httpClient(t, httpServer(t, l.serveArgs()), modernVersion)
		}},
		{"stdio-2025-11-25", func(t *testing.T, l *lab) *client.Client {
			return stdioClient(t, legacyVersion, l.serveArgs())
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t)
			cl := c.start(t, l)
			ch := collect(cl)
			uris := []string{"tlswatch://watches", alertsURI}
			listenTo(t, cl, ch, uris)
			want := []note{{"notifications/resources/list_changed", ""}}
			for _, u := range uris {
				want = append(want, note{"notifications/resources/updated", u})
			}
			// A healthy server: adding it raises no alert, only watch_added.
			args := map[string]any{"target": l.valid, "ip": l.validIP, "schedule": "@every 1h"}
			for i := range rounds {
				res := call(t, cl, "watch_endpoint", args)
				if res.IsError {
					t.Fatalf("round %d: watch_endpoint: %s", i, text(res))
				}
				ch.exactlyOnce(t, fmt.Sprintf("round %d, watch_endpoint", i), want)
				id, _ := structured(t, res)["id"].(string)
				if res := call(t, cl, "unwatch_endpoint", map[string]any{"id": id}); res.IsError {
					t.Fatalf("round %d: unwatch_endpoint: %s", i, text(res))
				}
				ch.exactlyOnce(t, fmt.Sprintf("round %d, unwatch_endpoint", i), want)
			}
			select {
			case n := <-ch:
				t.Errorf("after the last round: %s %v", n.Method, n.Params.AdditionalFields)
			case <-time.After(500 * time.Millisecond):
			}
		})
	}
}

// listenTo subscribes c to uris and to list_changed: resources/subscribe on
// a 2025-11-25 session, one subscriptions/listen stream on 2026-07-28.
func listenTo(t *testing.T, c *client.Client, ch notes, uris []string) {
	t.Helper()
	if c.ProtocolVersion() != modernVersion {
		for _, u := range uris {
			subscribe(t, c, u)
		}
		return
	}
	stop, err := c.ListenAsync(context.Background(), mcp.SubscriptionFilter{ResourcesListChanged: true, ResourceSubscriptions: uris},
		func(err error) { t.Logf("listen: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ch.wait(t, "notifications/subscriptions/acknowledged", "", 10*time.Second)
}

// exactlyOnce waits for each of want and fails on a second copy of one, or
// on any other notification.
func (ch notes) exactlyOnce(t *testing.T, what string, want []note) {
	t.Helper()
	got := map[note]int{}
	deadline := time.After(15 * time.Second)
	for len(got) < len(want) {
		select {
		case n := <-ch:
			uri, _ := n.Params.AdditionalFields["uri"].(string)
			k := note{n.Method, uri}
			got[k]++
			if !slices.Contains(want, k) || got[k] > 1 {
				t.Fatalf("%s: unexpected %s %q (so far %v)", what, k.method, k.uri, got)
			}
		case <-deadline:
			t.Fatalf("%s: within 15s got %v, want one each of %v: a notification was lost", what, got, want)
		}
	}
}

// TestStreamResumesAfterDroppedConnection: the official Go SDK on
// 2025-11-25 holds the standalone GET stream; its connection drops right
// after the server wrote a resources/updated that never reached the client.
// The SDK reconnects with Last-Event-ID (the stream's priming event ID) and
// the server sends what followed it again: the update arrives, once.
func TestStreamResumesAfterDroppedConnection(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs())
	cut := &cutter{opened: make(chan string, 8)}
	notes := &sdkNotes{updated: map[string]int{}, ch: make(chan string, 64)}
	ctx := context.Background()
	cs, err := newSDKClient(notes).Connect(ctx, &gosdk.StreamableClientTransport{Endpoint: u, HTTPClient: &http.Client{Transport: cut}},
		&gosdk.ClientSessionOptions{ProtocolVersion: legacyVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	if err := cs.Subscribe(ctx, &gosdk.SubscribeParams{URI: "tlswatch://watches"}); err != nil {
		t.Fatal(err)
	}
	if id := cut.next(t); id != "" {
		t.Fatalf("the first GET carried Last-Event-ID %q", id)
	}
	// Once the client has read the priming event, the connection starts
	// swallowing, and breaks once an update has gone into it unread.
	cut.swallowAfterPriming(t, "notifications/resources/updated")
	sdkCall(t, cs, "watch_endpoint", map[string]any{"target": l.valid, "ip": l.validIP, "schedule": "@every 1h"})
	if id := cut.next(t); id != "0" {
		t.Errorf("the reconnecting GET carried Last-Event-ID %q, want 0 (the priming event's)", id)
	}
	notes.wait(t, "tlswatch://watches")
	sdkCall(t, cs, "list_watches", nil)
	notes.mu.Lock()
	defer notes.mu.Unlock()
	if n := notes.updated["tlswatch://watches"]; n != 1 {
		t.Errorf("%d updates of tlswatch://watches, want 1", n)
	}
}

// cutter is an HTTP transport whose GET streams can be made to swallow
// what the server writes and then break, as a dropped connection does
// after the server's writes succeeded.
type cutter struct {
	opened chan string // the Last-Event-ID of each GET as it opens

	mu      sync.Mutex
	primed  chan struct{} // closed once the current GET passed on its priming event
	swallow string        // while set, GETs swallow until they have swallowed this
}

var errCut = errors.New("connection reset (the test cut it)")

func (c *cutter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	primed := make(chan struct{})
	c.mu.Lock()
	c.primed = primed
	c.mu.Unlock()
	resp.Body = &cutBody{ReadCloser: resp.Body, c: c, primed: primed}
	c.opened <- r.Header.Get("Last-Event-ID")
	return resp, nil
}

// next is the Last-Event-ID of the next GET.
func (c *cutter) next(t *testing.T) string {
	t.Helper()
	select {
	case id := <-c.opened:
		return id
	case <-time.After(20 * time.Second):
		t.Fatal("no GET stream within 20s")
		return ""
	}
}

// swallowAfterPriming makes the current GET swallow everything once its
// priming event went through, until it swallowed marker; then it breaks.
func (c *cutter) swallowAfterPriming(t *testing.T, marker string) {
	t.Helper()
	c.mu.Lock()
	primed := c.primed
	c.mu.Unlock()
	select {
	case <-primed:
	case <-time.After(20 * time.Second):
		t.Fatal("no priming event within 20s")
	}
	c.mu.Lock()
	c.swallow = marker
	c.mu.Unlock()
}

type cutBody struct {
	io.ReadCloser
	c         *cutter
	primed    chan struct{}
	passed    strings.Builder
	swallowed strings.Builder
}

func (b *cutBody) Read(p []byte) (int, error) {
	for {
		n, err := b.ReadCloser.Read(p)
		b.c.mu.Lock()
		marker := b.c.swallow
		b.c.mu.Unlock()
		if marker == "" {
			b.passed.Write(p[:n])
			if strings.Contains(b.passed.String(), "\n\n") {
				closeOnce(b.primed)
			}
			return n, err
		}
		b.swallowed.Write(p[:n])
		if strings.Contains(b.swallowed.String(), marker) {
			b.c.mu.Lock()
			b.c.swallow = ""
			b.c.mu.Unlock()
			b.ReadCloser.Close()
			return 0, errCut
		}
		if err != nil {
			return 0, err
		}
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}
