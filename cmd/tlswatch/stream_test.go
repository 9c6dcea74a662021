package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/tools"
	"github.com/tlswatch/tlswatch/watch"
)

// streamPeer is a raw HTTP client of one 2025-11-25 session of a real
// endpoint (mcp-go behind mcpEndpoint, with the tools server's
// subscription registry routed to it).
type streamPeer struct {
	t       *testing.T
	url     string
	session string
	srv     *tools.Server
	ep      *mcpEndpoint
}

func newStreamPeer(t *testing.T) *streamPeer {
	t.Helper()
	srv := tools.NewServer(tools.Deps{}, tools.ServerOptions{})
	t.Cleanup(srv.Close)
	_, ep := newMCPEndpoint(srv, Limits{}.withDefaults(0), &http.Server{}, slog.New(slog.DiscardHandler))
	ts := httptest.NewServer(ep)
	t.Cleanup(ts.Close)
	p := &streamPeer{t: t, url: ts.URL, srv: srv, ep: ep}
	resp := p.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if p.session = resp.Header.Get("Mcp-Session-Id"); p.session == "" {
		t.Fatal("initialize gave no session")
	}
	p.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return p
}

// post sends one JSON-RPC message of the session; it fails the test unless
// the answer is 200 or 202.
func (p *streamPeer) post(body string) *http.Response {
	p.t.Helper()
	resp := p.do(http.MethodPost, body, "")
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		p.t.Fatalf("POST %s: %d %s", body, resp.StatusCode, b)
	}
	return resp
}

func (p *streamPeer) do(method, body, lastEventID string) *http.Response {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if p.session != "" {
		req.Header.Set("Mcp-Session-Id", p.session)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp
}

// sseEvent is one event of a stream: its ID and its JSON-RPC message.
type sseEvent struct {
	id     string
	method string
	params map[string]any
}

// stream is an open GET stream; its events arrive on events, which closes
// when the server ends the stream. primed is the ID of its priming event.
type stream struct {
	events chan sseEvent
	primed string
}

// open opens the session's standalone stream and reads its priming event.
func (p *streamPeer) open(lastEventID string) *stream {
	p.t.Helper()
	resp := p.do(http.MethodGet, "", lastEventID)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		p.t.Fatalf("GET: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{events: make(chan sseEvent, 64)}
	p.t.Cleanup(func() { resp.Body.Close() })
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				var m struct {
					Method string         `json:"method"`
					Params map[string]any `json:"params"`
				}
				_ = json.Unmarshal([]byte(line[6:]), &m)
				ev.method, ev.params = m.Method, m.Params
			case line == "":
				s.events <- ev
				ev = sseEvent{}
			}
		}
	}()
	if ev := s.next(p.t); ev.id == "" || ev.method != "" {
		p.t.Fatalf("the stream opened with %+v, not a priming event", ev)
	} else {
		s.primed = ev.id
	}
	return s
}

// next is the stream's next event.
func (s *stream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

// expect checks the next events: "ID method [uri]" each.
func (s *stream) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		ev := s.next(t)
		got := ev.id + " " + ev.method
		if uri, ok := ev.params["uri"].(string); ok {
			got += " " + uri
		}
		if got != w {
			t.Fatalf("event %q, want %q", got, w)
		}
	}
}

func (s *stream) primedAt(t *testing.T, id string) {
	t.Helper()
	if s.primed != id {
		t.Errorf("primed at %q, want %q", s.primed, id)
	}
}

// ended waits for the server to end the stream.
func (s *stream) ended(t *testing.T, why string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return
			}
			t.Errorf("%s: the old stream got %+v", why, ev)
		case <-deadline:
			t.Fatalf("%s: the stream is still open after 10s", why)
		}
	}
}

// change tells the registry of a committed change of watch w_1.
func (p *streamPeer) change(kind, level string) {
	p.srv.Subs.Changed(watch.Change{Watch: watch.Watch{ID: "w_1"}, Events: []watch.Event{{Kind: kind, Level: level, Message: kind}}})
}

// TestStandaloneStream: a session's notifications wait in its outbox until
// a GET stream takes them, in order, each with its event ID; a client that
// reconnects with Last-Event-ID gets what followed that event again; a new
// GET replaces the open one; the stream ends with the session.
func TestStandaloneStream(t *testing.T) {
	p := newStreamPeer(t)
	p.post(`{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"tlswatch://watches"}}`)
	p.post(`{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"warning"}}`)

	// No stream yet: kept. The second update of tlswatch://watches is
	// still waiting behind the first, so it is not queued again.
	p.change(watch.EventWatchAdded, watch.LevelInfo)
	p.change(watch.EventStageCrossed, watch.LevelWarning)
	a := p.open("")
	a.primedAt(t, "0")
	a.expect(t, "1 notifications/resources/list_changed", "2 notifications/resources/updated tlswatch://watches", "3 notifications/message")

	// An info alert is below the session's level: the update alone.
	p.change(watch.EventRotated, watch.LevelInfo)
	a.expect(t, "4 notifications/resources/updated tlswatch://watches")

	b := p.open("3") // a reconnect that saw 3: 4 again, on the new stream
	b.primedAt(t, "3")
	a.ended(t, "replaced by a resuming GET")
	b.expect(t, "4 notifications/resources/updated tlswatch://watches")

	c := p.open("") // a fresh GET: only what no stream wrote
	c.primedAt(t, "4")
	b.ended(t, "replaced by a new GET")
	p.change(watch.EventRotated, watch.LevelInfo)
	c.expect(t, "5 notifications/resources/updated tlswatch://watches")

	resp := p.do(http.MethodDelete, "", "")
	resp.Body.Close()
	c.ended(t, "session deleted")
	if resp := p.do(http.MethodGet, "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d, want 404", resp.StatusCode)
	}
}

// TestStandaloneStreamHeartbeat: an idle stream carries a ping request
// without an event ID (not something a resuming client asks for again).
func TestStandaloneStreamHeartbeat(t *testing.T) {
	p := newStreamPeer(t)
	p.ep.heartbeat = 10 * time.Millisecond
	ev := p.open("").next(t)
	if ev.method != "ping" || ev.id != "" {
		t.Errorf("heartbeat %+v, want a ping without an event ID", ev)
	}
	resp := p.do(http.MethodDelete, "", "")
	resp.Body.Close()
}
