package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/tools"
)

// stdioPeer drives the stdio transport over pipes, as an MCP client would.
type stdioPeer struct {
	t     *testing.T
	in    *io.PipeWriter
	lines chan string
}

func newStdioPeer(t *testing.T, deps tools.Deps, maxLine int) *stdioPeer {
	t.Helper()
	srv := tools.NewServer(deps, tools.ServerOptions{})
	t.Cleanup(srv.Close)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	tr := &stdioTransport{srv: srv.MCPServer, refuse: srv.ResourceRequestError, logger: slog.New(slog.DiscardHandler), maxLine: maxLine}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tr.serve(context.Background(), inR, outW)
		outW.Close()
	}()
	p := &stdioPeer{t: t, in: inW, lines: make(chan string, 64)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		inW.Close()
		<-done
		for range p.lines {
		}
	})
	p.send(`{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	p.response(`"init"`)
	p.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return p
}

func (p *stdioPeer) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		p.t.Fatal(err)
	}
}

// response waits for the response with the given JSON id, failing on a
// response to any id in never.
func (p *stdioPeer) response(id string, never ...string) map[string]json.RawMessage {
	p.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("stdout closed waiting for %s", id)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				p.t.Fatalf("not JSON: %q", l)
			}
			for _, n := range never {
				if string(m["id"]) == n {
					p.t.Errorf("got a response to %s: %.300s", n, l)
				}
			}
			if string(m["id"]) == id {
				return m
			}
		case <-deadline:
			p.t.Fatalf("no response to %s within 20s", id)
		}
	}
}

func errorCode(t *testing.T, m map[string]json.RawMessage) int {
	t.Helper()
	var e struct {
		Code int `json:"code"`
	}
	if err := json.Unmarshal(m["error"], &e); err != nil {
		t.Fatalf("no error in %v", m)
	}
	return e.Code
}

func TestStdioCancelledRequestNotAnswered(t *testing.T) {
	slow := testlab.Dripper(t)
	p := newStdioPeer(t, tools.Deps{}, maxBodyBytes)
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"check_tls","arguments":{"target":%q,"timeout_ms":30000}}}`, slow))
	// The request is in flight once the reader has moved on to the next
	// line: a ping answered after it proves it.
	p.send(`{"jsonrpc":"2.0","id":42,"method":"ping"}`)
	p.response("42")
	p.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":41,"reason":"test"}}`)
	p.send(`{"jsonrpc":"2.0","id":43,"method":"ping"}`)
	p.response("43", "41")
	// The cancelled probe ends promptly (its context is cancelled); give it
	// the time to have answered, then check it did not.
	time.Sleep(200 * time.Millisecond)
	p.send(`{"jsonrpc":"2.0","id":44,"method":"ping"}`)
	p.response("44", "41")
}

func TestStdioRefusals(t *testing.T) {
	p := newStdioPeer(t, tools.Deps{}, 64<<10)
	cases := []struct {
		name, line string
		id         string
		code       int
	}{
		{"unknown resource", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"tlswatch://nope"}}`, "1", -32002},
		{"unknown watch subscribe", `{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"tlswatch://watches/w_x"}}`, "2", -32002},
		{"not JSON", `{"jsonrpc":`, "null", -32700},
		{"line too long", `{"jsonrpc":"2.0","id":3,"method":"ping","params":{"pad":"` + strings.Repeat("x", 100<<10) + `"}}`, "null", -32700},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.t = t
			p.send(c.line)
			if got := errorCode(t, p.response(c.id)); got != c.code {
				t.Errorf("code %d, want %d", got, c.code)
			}
			p.send(`{"jsonrpc":"2.0","id":"after","method":"ping"}`)
			p.response(`"after"`)
		})
	}
}

func TestStdioProbes(t *testing.T) {
	sc := testlab.Start(t, testlab.NewPKI(t), testlab.ScenarioValid)
	p := newStdioPeer(t, tools.Deps{ProbeOptions: probe.Options{Roots: sc.Roots}}, maxBodyBytes)
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"check_tls","arguments":{"target":"%s:%d","ip":%q}}}`, sc.Host, sc.Port, sc.IP))
	m := p.response("5")
	if !strings.Contains(string(m["result"]), `"status":"ok"`) {
		t.Errorf("check_tls: %.400s", m["result"])
	}
}

// TestStdioPipelinedAfterInitialize: a client may send requests right
// behind its initialize without waiting for the answer; only requests
// before any initialize are refused.
func TestStdioPipelinedAfterInitialize(t *testing.T) {
	srv := tools.NewServer(tools.Deps{}, tools.ServerOptions{})
	t.Cleanup(srv.Close)
	in := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
	}, "\n") + "\n"
	var out strings.Builder
	tr := &stdioTransport{srv: srv.MCPServer, refuse: srv.ResourceRequestError, logger: slog.New(slog.DiscardHandler), maxLine: maxBodyBytes}
	if err := tr.serve(context.Background(), strings.NewReader(in), &lockedWriter{w: &out}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(l), &m) == nil {
			got[string(m["id"])] = l
		}
	}
	if !strings.Contains(got["1"], "-32600") {
		t.Errorf("tools/list before initialize: %.200s", got["1"])
	}
	if !strings.Contains(got["3"], `"tools"`) {
		t.Errorf("tools/list pipelined after initialize: %.200s", got["3"])
	}
}

// lockedWriter serialises writes for a strings.Builder read after serve.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
