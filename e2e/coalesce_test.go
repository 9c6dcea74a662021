package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// TestOneUpdatePerURIPerProbe: one probe that sees a rotation, a status
// change and a stage crossing at once (a healthy 90-day certificate
// replaced by one expiring in 5 days) sends each subscriber exactly one
// resources/updated per URI (the alert feed included), and each event as
// its own alert.
func TestOneUpdatePerURIPerProbe(t *testing.T) {
	l := newLab(t)
	rot := testlab.ServeRotating(t, l.pki.Leaf(testlab.LeafOpts{})) // 90 days: ok, stage none
	c := stdioClient(t, legacyVersion, l.serveArgs())
	ch := collect(c)
	ctx := context.Background()
	res := call(t, c, "watch_endpoint", map[string]any{"target": hostTarget(rot.Addr), "ip": "127.0.0.1", "schedule": "@every 1s"})
	if res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	id, _ := structured(t, res)["id"].(string)
	uris := []string{"tlswatch://watches/" + id, "tlswatch://watches", "tlswatch://expiring", alertsURI}
	for _, u := range uris {
		if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: u}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelInfo}}); err != nil {
		t.Fatal(err)
	}
	rot.Rotate(l.pki.Leaf(testlab.LeafOpts{NotAfter: l.pki.Now.Add(5 * 24 * time.Hour)}))

	// Collect until the rotating probe's alerts are in and two more probes
	// (which change nothing) have run.
	updates, events := map[string]int{}, map[string]int{}
	probesAfter := func() int {
		// The Report of the rotating probe is stored (a change); the
		// probes after it are samples.
		h := structured(t, call(t, c, "get_history", map[string]any{"id": id, "limit": 20}))
		var rotated time.Time
		reports, _ := h["changes"].([]any)
		for _, r := range reports {
			rep, _ := r.(map[string]any)["report"].(map[string]any)
			if rep["expiry_stage"] == "7d" {
				rotated, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(rep["checked_at"]))
			}
		}
		n := 0
		samples, _ := h["samples"].([]any)
		for _, s := range samples {
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(s.(map[string]any)["at"]))
			if !rotated.IsZero() && err == nil && !at.Before(rotated.Truncate(time.Millisecond)) {
				n++
			}
		}
		return n
	}
	deadline := time.After(30 * time.Second)
	for events["rotated"] == 0 || events["stage_crossed"] == 0 || probesAfter() < 3 {
		select {
		case n := <-ch:
			switch n.Method {
			case "notifications/resources/updated":
				updates[fmt.Sprint(n.Params.AdditionalFields["uri"])]++
			case "notifications/message":
				if data, ok := n.Params.AdditionalFields["data"].(map[string]any); ok && data["watch"] == id {
					events[fmt.Sprint(data["event"])]++
				}
			}
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatalf("the rotation was not reported within 30s: events %v, updates %v", events, updates)
		}
	}
	for len(ch) > 0 {
		if n := <-ch; n.Method == "notifications/resources/updated" {
			updates[fmt.Sprint(n.Params.AdditionalFields["uri"])]++
		}
	}
	t.Logf("events %v updates %v", events, updates)
	if events["rotated"] != 1 || events["stage_crossed"] != 1 || events["status_changed"] != 1 {
		t.Errorf("alerts of the rotating probe: %v, want one each of rotated, stage_crossed, status_changed", events)
	}
	for _, u := range uris {
		if updates[u] != 1 {
			t.Errorf("%s: %d updates for one probe, want 1 (all: %v)", u, updates[u], updates)
		}
	}
}
