package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/watch"
)

func TestResourceRequestError(t *testing.T) {
	fw, srv := watchServer(t)
	ctx := context.Background()
	if _, err := fw.Add(ctx, watch.Spec{Target: "mcp.example.com"}); err != nil {
		t.Fatal(err)
	}
	known := WatchURI(fw.id("mcp.example.com"))
	long := "tlswatch://watches/" + strings.Repeat("x", 1<<20)
	cases := []struct {
		name, method string
		params       any
		code         int // 0: served
		msg          string
	}{
		{"known watch", "resources/read", map[string]any{"uri": known}, 0, ""},
		{"list", "resources/read", map[string]any{"uri": URIWatches}, 0, ""},
		{"expiring", "resources/subscribe", map[string]any{"uri": URIExpiring}, 0, ""},
		{"unknown watch", "resources/read", map[string]any{"uri": WatchURI("w_nope")}, mcp.RESOURCE_NOT_FOUND, `no watch "w_nope"`},
		{"unknown watch subscribe", "resources/subscribe", map[string]any{"uri": WatchURI("w_nope")}, mcp.RESOURCE_NOT_FOUND, "resource not found"},
		{"other scheme", "resources/read", map[string]any{"uri": "file:///etc/passwd"}, mcp.RESOURCE_NOT_FOUND, "resource not found"},
		{"nested path", "resources/read", map[string]any{"uri": WatchURI("a/b")}, mcp.RESOURCE_NOT_FOUND, "resource not found"},
		{"listen ok", "subscriptions/listen", map[string]any{"notifications": map[string]any{"resourceSubscriptions": []string{URIExpiring, known}}}, 0, ""},
		{"listen unknown", "subscriptions/listen", map[string]any{"notifications": map[string]any{"resourceSubscriptions": []string{URIExpiring, "tlswatch://nope"}}}, mcp.RESOURCE_NOT_FOUND, "tlswatch://nope"},
		{"1 MB uri", "resources/subscribe", map[string]any{"uri": long}, mcp.INVALID_PARAMS, "uri too long"},
		{"alert feed", "resources/read", map[string]any{"uri": URIAlerts + "?after=0&limit=5"}, 0, ""},
		{"alert feed subscribe", "resources/subscribe", map[string]any{"uri": URIAlerts}, 0, ""},
		{"alert feed bad cursor", "resources/read", map[string]any{"uri": URIAlerts + "?after=x"}, mcp.INVALID_PARAMS, "not a cursor"},
		{"alert feed bad key", "resources/read", map[string]any{"uri": URIAlerts + "?since=1"}, mcp.INVALID_PARAMS, "takes after and limit"},
		{"alert feed subscribe with a cursor", "resources/subscribe", map[string]any{"uri": URIAlerts + "?after=1"}, mcp.INVALID_PARAMS, "subscribe to tlswatch://alerts itself"},
		{"not a resource method", "tools/list", map[string]any{}, 0, ""},
		{"malformed params left to the SDK", "resources/read", []int{1}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			params, _ := json.Marshal(c.params)
			e := srv.ResourceRequestError(ctx, "", c.method, params)
			switch {
			case c.code == 0 && e != nil:
				t.Fatalf("refused: %d %s", e.Code, e.Message)
			case c.code == 0:
				return
			case e == nil:
				t.Fatalf("served, want code %d", c.code)
			case e.Code != c.code || !strings.Contains(e.Message, c.msg):
				t.Errorf("got %d %q, want %d containing %q", e.Code, e.Message, c.code, c.msg)
			}
			if len(e.Message) > 600 {
				t.Errorf("message echoes %d bytes", len(e.Message))
			}
		})
	}
}

// TestOneUpdatePerProbe: the events of one probe (rotation, status change,
// stage crossing) reach a subscriber as one resources/updated per URI, and
// each event still as its own log alert.
func TestOneUpdatePerProbe(t *testing.T) {
	fw, srv := watchServer(t)
	ctx := context.Background()
	c, notes := inProcess(t, srv, "2025-11-25")
	for _, h := range []string{"a.example.com", "marker.example.com"} {
		if _, err := fw.Add(ctx, watch.Spec{Target: h}); err != nil {
			t.Fatal(err)
		}
	}
	// Each add is one Change that starts with list_changed, sent to every
	// session; once both have arrived, nothing of the adds is in flight
	// (the rest of those Changes went to subscriptions not yet made).
	waitNote(t, notes, "notifications/resources/list_changed", "", 5*time.Second)
	waitNote(t, notes, "notifications/resources/list_changed", "", 5*time.Second)
	aURI, markerURI := WatchURI(fw.id("a.example.com")), WatchURI(fw.id("marker.example.com"))
	for _, u := range []string{aURI, URIWatches, URIExpiring, markerURI} {
		if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: u}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelInfo}}); err != nil {
		t.Fatal(err)
	}

	fw.fireChange("a.example.com",
		[2]string{watch.EventRotated, "info"}, [2]string{watch.EventStatusChanged, "critical"}, [2]string{watch.EventStageCrossed, "critical"})
	// Notifications reach the session in order: once the marker's own
	// update arrives, everything of the first probe has.
	fw.fire("marker.example.com", watch.EventRotated, "info")
	updates, alerts := map[string]int{}, 0
	deadline := time.After(5 * time.Second)
	for {
		select {
		case n := <-notes:
			switch n.Method {
			case "notifications/message":
				alerts++
			case "notifications/resources/updated":
				u, _ := n.Params.AdditionalFields["uri"].(string)
				updates[u]++
			}
			if n.Method == "notifications/resources/updated" && n.Params.AdditionalFields["uri"] == markerURI {
				if updates[aURI] != 1 || updates[URIWatches] != 1 || updates[URIExpiring] != 1 {
					t.Errorf("updates of one probe: %v, want one per URI", updates)
				}
				if alerts != 3 {
					t.Errorf("%d log alerts for 3 events", alerts)
				}
				return
			}
		case <-deadline:
			t.Fatalf("marker update not seen; updates %v", updates)
		}
	}
}

// TestResourceLinks: watch_endpoint, list_watches and list_expiring link to
// the watches' resources (resource_link content), which a client can read
// or subscribe to.
func TestResourceLinks(t *testing.T) {
	fw := newFakeWatch(t)
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	links := func(res *mcp.CallToolResult) []string {
		var out []string
		for _, c := range res.Content {
			if l, ok := c.(mcp.ResourceLink); ok {
				out = append(out, l.URI)
			}
		}
		return out
	}
	res := h.call("watch_endpoint", map[string]any{"target": "mcp.example.com"})
	if got := links(res); len(got) != 1 || got[0] != WatchURI(fw.id("mcp.example.com")) {
		t.Errorf("watch_endpoint links: %v", got)
	}
	h.call("watch_endpoint", map[string]any{"target": "expired.example.com"})
	if got := links(h.call("list_watches", nil)); len(got) != 2 {
		t.Errorf("list_watches links: %v", got)
	}
	if got := links(h.call("list_expiring", map[string]any{"within_days": 3650})); len(got) == 0 {
		t.Errorf("list_expiring links: %v", got)
	}
	if got := links(h.call("check_tls", map[string]any{"target": "mcp.example.com"})); len(got) != 0 {
		t.Errorf("check_tls links: %v", got)
	}
}

// inProcess connects an initialized in-process client of the given
// protocol version to srv, with its notifications on a channel.
func inProcess(t *testing.T, srv *Server, version string) (*client.Client, chan mcp.JSONRPCNotification) {
	t.Helper()
	ctx := context.Background()
	c, err := client.NewInProcessClientWithOptions(srv.MCPServer, client.WithProtocolVersion(version))
	if err != nil {
		t.Fatal(err)
	}
	notes := make(chan mcp.JSONRPCNotification, 100)
	c.OnNotification(func(n mcp.JSONRPCNotification) { notes <- n })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	return c, notes
}

// TestAlertFeed: tlswatch://alerts lists every committed event with an id,
// reads from a cursor, and its subscribers hear of each new event.
func TestAlertFeed(t *testing.T) {
	fw, srv := watchServer(t)
	ctx := context.Background()
	c, notes := inProcess(t, srv, "2025-11-25")
	if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: URIAlerts}}); err != nil {
		t.Fatal(err)
	}
	read := func(uri string) watch.AlertFeed {
		t.Helper()
		res, err := c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: uri}})
		if err != nil {
			t.Fatalf("read %s: %v", uri, err)
		}
		var feed watch.AlertFeed
		if err := json.Unmarshal([]byte(res.Contents[0].(mcp.TextResourceContents).Text), &feed); err != nil {
			t.Fatal(err)
		}
		return feed
	}
	if _, err := fw.Add(ctx, watch.Spec{Target: "mcp.example.com"}); err != nil {
		t.Fatal(err)
	}
	waitNote(t, notes, "notifications/resources/updated", URIAlerts, 5*time.Second)
	first := read(URIAlerts)
	if len(first.Alerts) == 0 || first.Alerts[0].Kind != watch.EventWatchAdded || first.Next != first.Alerts[len(first.Alerts)-1].ID {
		t.Fatalf("feed after an add: %+v", first)
	}
	if caughtUp := read(URIAlerts + "?after=" + first.Next); len(caughtUp.Alerts) != 0 || caughtUp.Next != first.Next {
		t.Errorf("nothing new after next: %+v", caughtUp)
	}
	if _, err := fw.Remove(ctx, fw.id("mcp.example.com"), ""); err != nil {
		t.Fatal(err)
	}
	waitNote(t, notes, "notifications/resources/updated", URIAlerts, 5*time.Second)
	missed := read(URIAlerts + "?after=" + first.Next)
	if len(missed.Alerts) != 1 || missed.Alerts[0].Kind != watch.EventWatchRemoved {
		t.Errorf("what a client that was away missed: %+v", missed)
	}
}
