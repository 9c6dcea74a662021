package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

func note(method string, params map[string]any) mcp.JSONRPCNotification {
	return mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION,
		Notification: mcp.Notification{Method: method, Params: mcp.NotificationParams{AdditionalFields: params}}}
}

func updated(uri string) mcp.JSONRPCNotification {
	return note("notifications/resources/updated", map[string]any{"uri": uri})
}

func listChanged() mcp.JSONRPCNotification { return note("notifications/resources/list_changed", nil) }

func logMessage(i int) mcp.JSONRPCNotification {
	return note("notifications/message", map[string]any{"level": "warning", "data": i})
}

// label names an entry by its method and uri or data, e.g. "updated a",
// "message 3", "list_changed".
func label(t *testing.T, e outEntry) string {
	t.Helper()
	var m struct {
		Method string         `json:"method"`
		Params map[string]any `json:"params"`
	}
	if err := json.Unmarshal(e.data, &m); err != nil {
		t.Fatalf("entry %d: %v", e.seq, err)
	}
	s := strings.TrimPrefix(strings.TrimPrefix(m.Method, "notifications/resources/"), "notifications/")
	if uri, ok := m.Params["uri"]; ok {
		return fmt.Sprint(s, " ", uri)
	}
	if d, ok := m.Params["data"]; ok {
		return fmt.Sprint(s, " ", d)
	}
	return s
}

func labels(t *testing.T, es []outEntry) string {
	t.Helper()
	var out []string
	for _, e := range es {
		out = append(out, label(t, e))
	}
	return strings.Join(out, ", ")
}

func TestOutboxQueue(t *testing.T) {
	for _, c := range []struct {
		name string
		max  int
		// run pushes and marks written; it returns what a new stream
		// (no Last-Event-ID) would be sent.
		run       func(o *outbox) []outEntry
		want      string
		dropLines int
	}{
		{"in order", 10, func(o *outbox) []outEntry {
			o.push(listChanged())
			o.push(updated("a"))
			o.push(logMessage(1))
			return o.from(o.resume(""))
		}, "list_changed, updated a, message 1", 0},
		{"a waiting update or list_changed is not queued twice; log messages are", 10, func(o *outbox) []outEntry {
			for range 2 {
				o.push(updated("a"))
				o.push(listChanged())
				o.push(updated("b"))
				o.push(logMessage(1))
			}
			return o.from(o.resume(""))
		}, "updated a, list_changed, updated b, message 1, message 1", 0},
		{"once written, the same update is queued again", 10, func(o *outbox) []outEntry {
			o.push(updated("a"))
			o.written(o.from(o.resume(""))[0].seq)
			o.push(updated("a"))
			return o.from(o.resume(""))
		}, "updated a", 0},
		{"one taken by a stream may already have been read: queued again", 10, func(o *outbox) []outEntry {
			o.push(updated("a"))
			o.from(o.resume("")) // being written, not yet flushed
			o.push(updated("a"))
			return o.from(o.resume("")) // the write failed: a new stream sends both
		}, "updated a, updated a", 0},
		{"full: the oldest goes, one log line", 3, func(o *outbox) []outEntry {
			for i := range 5 {
				o.push(logMessage(i))
			}
			return o.from(o.resume(""))
		}, "message 2, message 3, message 4", 1},
		{"written entries make room first, silently; a new run of drops logs again", 3, func(o *outbox) []outEntry {
			for i := range 5 {
				o.push(logMessage(i))
			}
			batch := o.from(o.resume(""))
			o.written(batch[len(batch)-1].seq)
			for i := 5; i < 9; i++ {
				o.push(logMessage(i)) // 5, 6, 7 push out written ones; 8 drops 5
			}
			return o.from(o.resume(""))
		}, "message 6, message 7, message 8", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			o := newOutbox("s1", c.max, slog.New(slog.NewTextHandler(&logs, nil)))
			if got := labels(t, c.run(o)); got != c.want {
				t.Errorf("sent %q, want %q", got, c.want)
			}
			if n := strings.Count(logs.String(), "outbox full"); n != c.dropLines {
				t.Errorf("%d drop log lines, want %d:\n%s", n, c.dropLines, logs.String())
			}
		})
	}
}

func TestOutboxResume(t *testing.T) {
	o := newOutbox("s1", 4, nil)
	for i := 1; i <= 3; i++ {
		o.push(logMessage(i)) // seq i
	}
	o.written(2) // a stream wrote 1 and 2
	for _, c := range []struct {
		lastEventID string
		want        string
	}{
		{"", "message 3"},                        // what no stream wrote
		{"1", "message 2, message 3"},            // 2 was written, maybe lost with the connection
		{"2", "message 3"},                       //
		{"3", "message 3"},                       // never written: not one the client can have seen
		{"0", "message 1, message 2, message 3"}, // the priming ID of a stream that started at 1
		{"x", "message 3"},                       //
		{"18446744073709551615", "message 3"},    //
	} {
		t.Run("Last-Event-ID "+c.lastEventID, func(t *testing.T) {
			if got := labels(t, o.from(o.resume(c.lastEventID))); got != c.want {
				t.Errorf("sent %q, want %q", got, c.want)
			}
		})
	}
	// The client resumes after an event no longer held: it gets the oldest
	// held on.
	for i := 4; i <= 6; i++ {
		o.push(logMessage(i))
	}
	if got := labels(t, o.from(o.resume("1"))); got != "message 3, message 4, message 5, message 6" {
		t.Errorf("resume after a dropped event: %q", got)
	}
}

func TestOutboxAttach(t *testing.T) {
	t.Run("a second stream replaces the first", func(t *testing.T) {
		o := newOutbox("s1", 4, nil)
		ctxA, releaseA, err := o.attach(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			_, releaseB, err := o.attach(context.Background())
			if err == nil {
				releaseB()
			}
			got <- err
		}()
		<-ctxA.Done() // B ends A's stream
		select {
		case err := <-got:
			t.Fatalf("B attached while A still held the outbox: %v", err)
		default:
		}
		releaseA()
		if err := <-got; err != nil {
			t.Fatalf("B: %v", err)
		}
	})
	t.Run("of several waiting, the newest wins", func(t *testing.T) {
		o := newOutbox("s1", 4, nil)
		ctxA, releaseA, _ := o.attach(context.Background())
		b, c := make(chan error, 1), make(chan error, 1)
		go func() { _, _, err := o.attach(context.Background()); b <- err }()
		<-ctxA.Done()
		go func() {
			_, release, err := o.attach(context.Background())
			if err == nil {
				release()
			}
			c <- err
		}()
		waitUntil(t, func() bool { o.mu.Lock(); defer o.mu.Unlock(); return o.latest == 3 })
		releaseA()
		if err := <-b; !errors.Is(err, errSuperseded) {
			t.Errorf("B: %v, want errSuperseded", err)
		}
		if err := <-c; err != nil {
			t.Errorf("C: %v", err)
		}
	})
	t.Run("a waiting stream whose client goes gives up", func(t *testing.T) {
		o := newOutbox("s1", 4, nil)
		_, releaseA, _ := o.attach(context.Background())
		defer releaseA()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := o.attach(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("attach with a cancelled context: %v", err)
		}
	})
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSessionIdleSweep(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newSessionIDs(clk.now, 10)
	var ended []string
	m.evict = func(id string) { ended = append(ended, id) }
	m.confirm("streaming")
	m.confirm("idle")
	sctx, _, _ := m.enter("streaming") // its GET stream stays open
	_, leave, _ := m.enter("streaming")
	leave() // and a POST came and went

	clk.t = clk.t.Add(sessionIdleTTL - time.Second)
	m.sweep(sessionIdleTTL)
	if len(ended) != 0 {
		t.Fatalf("ended %v before the TTL", ended)
	}
	clk.t = clk.t.Add(time.Second)
	m.sweep(sessionIdleTTL)
	if len(ended) != 1 || ended[0] != "idle" || m.isLive("idle") || m.outbox("idle") != nil {
		t.Fatalf("ended %v, want [idle] gone with its outbox", ended)
	}
	clk.t = clk.t.Add(24 * time.Hour)
	m.sweep(sessionIdleTTL)
	if !m.isLive("streaming") || sctx.Err() != nil || m.outbox("streaming") == nil {
		t.Errorf("a session with an open stream was swept (ended %v)", ended)
	}
}
