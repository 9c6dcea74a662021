package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
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
