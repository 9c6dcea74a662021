package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// TestStageAlertOnceAcrossRestart: the 7d stage alert of a watch reaches the
// client as notifications/message once, and a restarted server on the same
// database does not send it again.
func TestStageAlertOnceAcrossRestart(t *testing.T) {
	l := newLab(t)
	c := stdioClient(t, legacyVersion, l.serveArgs())
	ch := collect(c)
	if err := c.SetLevel(context.Background(), mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelInfo}}); err != nil {
		t.Fatal(err)
	}
	id := addWatch(t, c, l)
	deadline := time.After(15 * time.Second)
wait:
	for {
		select {
		case n := <-ch:
			data, _ := n.Params.AdditionalFields["data"].(map[string]any)
			if n.Method == "notifications/message" && data["event"] == "stage_crossed" {
				if data["watch"] != id || data["expiry_stage"] != "7d" {
					t.Errorf("stage alert: %v", n.Params.AdditionalFields)
				}
				break wait
			}
		case <-deadline:
			t.Fatal("no stage_crossed alert within 15s")
		}
	}
	c.Close()

	c2 := stdioClient(t, legacyVersion, l.serveArgs())
	ch2 := collect(c2)
	if err := c2.SetLevel(context.Background(), mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelInfo}}); err != nil {
		t.Fatal(err)
	}
	// The watch probes every second: give it a few probes to misbehave.
	deadline = time.After(4 * time.Second)
	for {
		select {
		case n := <-ch2:
			if n.Method != "notifications/message" {
				continue
			}
			if data, _ := n.Params.AdditionalFields["data"].(map[string]any); data["event"] == "stage_crossed" {
				t.Errorf("stage alert sent again after restart: %v", n.Params.AdditionalFields)
			}
		case <-deadline:
			return
		}
	}
}
