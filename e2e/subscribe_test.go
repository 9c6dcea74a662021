package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// notes collects a client's notifications.
type notes chan mcp.JSONRPCNotification

func collect(c *client.Client) notes {
	ch := make(notes, 256)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		select {
		case ch <- n:
		default:
		}
	})
	return ch
}

// wait returns the first notification of method (for uri, when given).
func (ch notes) wait(t *testing.T, method, uri string, within time.Duration) mcp.JSONRPCNotification {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case n := <-ch:
			if n.Method == method && (uri == "" || n.Params.AdditionalFields["uri"] == uri) {
				return n
			}
		case <-deadline:
			t.Fatalf("no %s %s within %s", method, uri, within)
		}
	}
}

// note names a notification by method and, for resource updates, uri.
type note struct{ method, uri string }

// waitAll waits for every one of want, in any order: notifications of one
// change may reach the client on two streams (the POST that caused it and
// the standalone stream), so their order is not part of the contract.
func (ch notes) waitAll(t *testing.T, within time.Duration, want ...note) {
	t.Helper()
	deadline := time.After(within)
	missing := map[note]bool{}
	for _, w := range want {
		missing[w] = true
	}
	for len(missing) > 0 {
		select {
		case n := <-ch:
			uri, _ := n.Params.AdditionalFields["uri"].(string)
			delete(missing, note{n.Method, uri})
			delete(missing, note{n.Method, ""})
		case <-deadline:
			t.Fatalf("within %s, still missing %v", within, missing)
		}
	}
}

// addWatch calls watch_endpoint on the lab's 5-day server every second and
// returns the watch id; it skips the test when the server has no watcher.
func addWatch(t *testing.T, c *client.Client, l *lab) string {
	t.Helper()
	res := call(t, c, "watch_endpoint", map[string]any{
		"target": hostTarget(l.rotating.Addr), "ip": "127.0.0.1", "schedule": "@every 1s",
	})
	if res.IsError {
		if strings.Contains(text(res), "watching is not available") {
			t.Skipf("no watch engine in this build: %s", text(res))
		}
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	w := structured(t, res)
	id, _ := w["id"].(string)
	if id == "" {
		t.Fatalf("watch_endpoint returned no id: %s", text(res))
	}
	return id
}

// checkExpiring: list_expiring shows the watch at stage 7d.
func checkExpiring(t *testing.T, c *client.Client, id string) {
	t.Helper()
	res := call(t, c, "list_expiring", map[string]any{})
	if res.IsError {
		t.Fatalf("list_expiring: %s", text(res))
	}
	m := structured(t, res)
	if m["within_days"] != float64(30) {
		t.Errorf("within_days = %v", m["within_days"])
	}
	ws, _ := m["watches"].([]any)
	for _, w := range ws {
		w := w.(map[string]any)
		if w["id"] != id {
			continue
		}
		rep, _ := w["last_report"].(map[string]any)
		if rep["expiry_stage"] != "7d" {
			t.Errorf("expiry_stage = %v, want 7d", rep["expiry_stage"])
		}
		return
	}
	t.Errorf("list_expiring lacks %s: %s", id, text(res))
}

// rotate serves a new certificate (also 5 days) so the watcher sees a new
// fingerprint and tells the subscribers of the watch.
func rotate(l *lab) {
	l.rotating.Rotate(l.pki.Leaf(testlab.LeafOpts{NotAfter: l.pki.Now.Add(5 * 24 * time.Hour)}))
}

func subscribe(t *testing.T, c *client.Client, uri string) {
	t.Helper()
	req := mcp.SubscribeRequest{}
	req.Params.URI = uri
	if err := c.Subscribe(context.Background(), req); err != nil {
		t.Fatalf("subscribe %s: %v", uri, err)
	}
}

// legacySubscription is the 2025-11-25 flow: resources/subscribe, then
// notifications/resources/updated on the session.
func legacySubscription(t *testing.T, c *client.Client, ch notes, l *lab) {
	subscribe(t, c, "tlswatch://expiring")
	id := addWatch(t, c, l)
	// Adding a watch changes the list (list_changed, then the lists'
	// updates follow it).
	ch.waitAll(t, 15*time.Second, note{"notifications/resources/list_changed", ""},
		note{"notifications/resources/updated", "tlswatch://expiring"})
	checkExpiring(t, c, id)

	uri := "tlswatch://watches/" + id
	subscribe(t, c, uri)
	rotate(l)
	ch.wait(t, "notifications/resources/updated", uri, 20*time.Second)
}

func TestSubscriptionStdioLegacy(t *testing.T) {
	l := newLab(t)
	c := stdioClient(t, legacyVersion, l.serveArgs())
	ch := collect(c)
	legacySubscription(t, c, ch, l)
}

func TestSubscriptionHTTPLegacy(t *testing.T) {
	l := newLab(t)
	url := httpServer(t, l.serveArgs())
	// A 2025-11-25 client receives server notifications on the standalone
	// GET stream.
	c := httpClient(t, url, legacyVersion, transport.WithContinuousListening())
	ch := collect(c)
	legacySubscription(t, c, ch, l)
}

// modernSubscription is the 2026-07-28 flow: subscriptions/listen with the
// URIs in its filter; reopened with the watch's URI once its id is known.
func modernSubscription(t *testing.T, c *client.Client, ch notes, l *lab) {
	if c.ProtocolVersion() != modernVersion {
		t.Fatalf("client negotiated %q, want %s", c.ProtocolVersion(), modernVersion)
	}
	ctx := context.Background()
	stop, err := c.ListenAsync(ctx, mcp.SubscriptionFilter{
		ResourcesListChanged:  true,
		ResourceSubscriptions: []string{"tlswatch://expiring"},
	}, func(err error) { t.Logf("listen: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "notifications/subscriptions/acknowledged", "", 10*time.Second)
	id := addWatch(t, c, l)
	ch.waitAll(t, 15*time.Second, note{"notifications/resources/list_changed", ""},
		note{"notifications/resources/updated", "tlswatch://expiring"})
	checkExpiring(t, c, id)
	stop()

	uri := "tlswatch://watches/" + id
	stop, err = c.ListenAsync(ctx, mcp.SubscriptionFilter{ResourceSubscriptions: []string{"tlswatch://expiring", uri}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ch.wait(t, "notifications/subscriptions/acknowledged", "", 10*time.Second)
	rotate(l)
	n := ch.wait(t, "notifications/resources/updated", uri, 20*time.Second)
	if n.Params.Meta["io.modelcontextprotocol/subscriptionId"] == nil {
		t.Errorf("update not tagged with the subscription id: %+v", n.Params.Meta)
	}
}

func TestSubscriptionHTTPModern(t *testing.T) {
	l := newLab(t)
	url := httpServer(t, l.serveArgs())
	c := httpClient(t, url, modernVersion)
	modernSubscription(t, c, collect(c), l)
}

func TestSubscriptionStdioModern(t *testing.T) {
	l := newLab(t)
	c := stdioClient(t, modernVersion, l.serveArgs())
	modernSubscription(t, c, collect(c), l)
}
