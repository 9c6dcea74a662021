package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// Raw HTTP against the real binary: the status codes of the session
// lifecycle and the protocol edges, as a client that is not an SDK sees them.

// rawClient speaks JSON-RPC over plain HTTP to one /mcp URL.
type rawClient struct {
	t       *testing.T
	url     string
	session string
}

// do sends one HTTP request with a JSON-RPC body (none when body is "")
// and returns the response with its body read, or, for an event stream that
// has not ended within a second, what arrived by then.
func (c *rawClient) do(method, body string, headers map[string]string) (*http.Response, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" && method == http.MethodGet {
		return resp, "" // a standalone stream: the status is what counts
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// initialize starts a 2025-11-25 session and keeps its ID.
func (c *rawClient) initialize() {
	c.t.Helper()
	resp, body := c.do(http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, map[string]string{"Mcp-Session-Id": ""})
	c.session = resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || c.session == "" {
		c.t.Fatalf("initialize: %d, session %q: %s", resp.StatusCode, c.session, body)
	}
	if resp, body := c.do(http.MethodPost, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
}

// rpcError is the error of a JSON-RPC response in body (JSON or one SSE
// event); zero when the response has none.
func rpcError(t *testing.T, body string) (code int, message string) {
	t.Helper()
	if i := strings.Index(body, "data: "); i >= 0 {
		body = strings.TrimSpace(strings.SplitN(body[i+6:], "\n", 2)[0])
	}
	var m struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a JSON-RPC message: %v: %.300s", err, body)
	}
	if m.Error == nil {
		return 0, ""
	}
	return m.Error.Code, m.Error.Message
}

// TestHTTPSessionStatuses: every method answers a missing session ID with
// 400 and an unknown one with 404, so a client learns at once that it must
// initialize; a live session's GET opens its stream.
func TestHTTPSessionStatuses(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs())
	live := &rawClient{t: t, url: u}
	live.initialize()
	unknown := "mcp-session-00000000000000000000000000000000"
	ping := `{"jsonrpc":"2.0","id":7,"method":"ping"}`
	cases := []struct {
		name, method, session, body string
		want                        int
	}{
		{"GET without id", http.MethodGet, "", "", http.StatusBadRequest},
		{"GET unknown id", http.MethodGet, unknown, "", http.StatusNotFound},
		{"GET made-up id", http.MethodGet, "hello", "", http.StatusNotFound},
		{"DELETE without id", http.MethodDelete, "", "", http.StatusBadRequest},
		{"DELETE unknown id", http.MethodDelete, unknown, "", http.StatusNotFound},
		{"POST without id", http.MethodPost, "", ping, http.StatusBadRequest},
		{"POST unknown id", http.MethodPost, unknown, ping, http.StatusNotFound},
		{"POST live id", http.MethodPost, live.session, ping, http.StatusOK},
		{"GET live id", http.MethodGet, live.session, "", http.StatusOK},
		{"PUT", http.MethodPut, live.session, "", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := &rawClient{t: t, url: u, session: c.session}
			resp, body := rc.do(c.method, c.body, nil)
			if resp.StatusCode != c.want {
				t.Errorf("status %d, want %d: %.200s", resp.StatusCode, c.want, body)
			}
			if c.method == http.MethodGet && c.want == http.StatusOK && resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Errorf("GET stream content type %q", resp.Header.Get("Content-Type"))
			}
			if got := resp.Header.Get("Mcp-Session-Id"); c.want != http.StatusOK && got != "" {
				t.Errorf("a failed %s minted session %q", c.method, got)
			}
		})
	}
}

// TestHTTPSessionEnds: DELETE ends the session, its open GET stream, and
// every later request with its ID (404).
func TestHTTPSessionEnds(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs())
	c := &rawClient{t: t, url: u}
	c.initialize()

	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", c.session)
	stream, err := http.DefaultClient.Do(req) // returns once the stream is open
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("GET status %d", stream.StatusCode)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, stream.Body) // returns when the server ends the stream
		ended <- err
	}()

	if resp, body := c.do(http.MethodDelete, "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("GET stream: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the GET stream of a deleted session is still open after 10s")
	}
	c.want404(t, "after DELETE")
}

// want404 checks that every method with c's session gets 404.
func (c *rawClient) want404(t *testing.T, when string) {
	t.Helper()
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPost} {
		body := ""
		if m == http.MethodPost {
			body = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
		}
		if resp, b := c.do(m, body, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404: %.200s", m, when, resp.StatusCode, b)
		}
	}
}

// TestHTTPFailedInitializeMintsNothing: an initialize that fails gives no
// session ID, and the ID mcp-go minted for it is unknown afterwards.
func TestHTTPFailedInitializeMintsNothing(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs())
	c := &rawClient{t: t, url: u}
	resp, body := c.do(http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":5,"capabilities":"none"}}`, nil)
	if code, _ := rpcError(t, body); code == 0 {
		t.Fatalf("a malformed initialize succeeded: %d %s", resp.StatusCode, body)
	}
	if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
		t.Errorf("failed initialize minted session %q", id)
	}
}

// TestHTTPRestartTellsClient: after `serve` restarts on the same database
// and port, the old session ID gets 404 on its very next request of each
// method, and a new initialize works.
func TestHTTPRestartTellsClient(t *testing.T) {
	l := newLab(t)
	u, stop := startHTTPServer(t, l.serveArgs())
	c := &rawClient{t: t, url: u}
	c.initialize()
	stop()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	u2, _ := startHTTPServerOn(t, pu.Host, l.serveArgs())
	if u2 != u {
		t.Fatalf("restarted on %s, want %s", u2, u)
	}
	c.want404(t, "with the session of before the restart")
	c.session = ""
	c.initialize()
	if resp, b := c.do(http.MethodPost, `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("new session: %d %.200s", resp.StatusCode, b)
	}
}

// TestHTTPUnknownResource: reading or subscribing to a resource the server
// does not have is -32002 (resource not found) in both eras, not an
// internal error, and a subscription to it is refused.
func TestHTTPUnknownResource(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs())
	c := &rawClient{t: t, url: u}
	c.initialize()
	for _, req := range []string{
		`{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"tlswatch://watches/w_doesnotexist"}}`,
		`{"jsonrpc":"2.0","id":6,"method":"resources/subscribe","params":{"uri":"tlswatch://watches/w_doesnotexist"}}`,
		`{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"tlswatch://nothing"}}`,
	} {
		resp, body := c.do(http.MethodPost, req, map[string]string{"Mcp-Protocol-Version": legacyVersion})
		if code, msg := rpcError(t, body); resp.StatusCode != http.StatusOK || code != -32002 {
			t.Errorf("%s: %d %d %q, want -32002", req, resp.StatusCode, code, msg)
		}
	}
	modern := &rawClient{t: t, url: u}
	for _, m := range []struct{ method, name, params string }{
		{"resources/read", "tlswatch://watches/w_doesnotexist", `{"uri":"tlswatch://watches/w_doesnotexist"`},
		{"subscriptions/listen", "", `{"notifications":{"resourceSubscriptions":["tlswatch://nope"]}`},
	} {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":8,"method":%q,"params":%s,"_meta":{"io.modelcontextprotocol/protocolVersion":%q,"io.modelcontextprotocol/clientCapabilities":{}}}}`, m.method, m.params, modernVersion)
		h := map[string]string{"Mcp-Protocol-Version": modernVersion, "Mcp-Method": m.method}
		if m.name != "" {
			h["Mcp-Name"] = m.name
		}
		resp, got := modern.do(http.MethodPost, body, h)
		if code, msg := rpcError(t, got); code != -32002 {
			t.Errorf("2026-07-28 %s: %d %d %q, want -32002", m.method, resp.StatusCode, code, msg)
		}
	}
}

// TestHTTPModernNotificationWithoutMeta: a 2026-07-28 notification that
// carries its version only in the header (the official Go SDK's
// notifications/cancelled) is accepted with 202.
func TestHTTPModernNotificationWithoutMeta(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs())
	c := &rawClient{t: t, url: u}
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3,"reason":"context canceled"}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4,"_meta":{}}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}`,
	} {
		resp, got := c.do(http.MethodPost, body, map[string]string{"Mcp-Protocol-Version": modernVersion})
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("%s: %d, want 202: %.200s", body, resp.StatusCode, got)
		}
	}
}

// TestHTTPCancelledRequestNotAnswered: a request the client cancels gets no
// JSON-RPC response on its POST; the session keeps working.
func TestHTTPCancelledRequestNotAnswered(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs())
	c := &rawClient{t: t, url: u}
	c.initialize()
	slow := testlab.Dripper(t) // a handshake that never completes
	// scan_endpoints reports progress when the valid target is done: then
	// the call is certainly in flight, waiting for the slow one.
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"_meta":{"progressToken":"p1"},"name":"scan_endpoints","arguments":{"targets":[{"target":%q,"ip":"127.0.0.1"},{"target":%q,"timeout_ms":30000}]}}}`, l.valid, slow)
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", c.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("scan_endpoints with a progress token answered %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitLine := func(what string) bool {
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return false
				}
				if strings.Contains(l, what) {
					return true
				}
			case <-deadline:
				t.Fatalf("nothing with %q within 15s", what)
			}
		}
	}
	if !waitLine("notifications/progress") {
		t.Fatal("the stream ended before any progress")
	}
	if resp, b := c.do(http.MethodPost, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"user gave up"}}`, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", resp.StatusCode, b)
	}
	if waitLine(`"slow-1"`) {
		t.Error("the cancelled request was answered")
	}
	if resp, b := c.do(http.MethodPost, `{"jsonrpc":"2.0","id":9,"method":"ping"}`, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("session after a cancel: %d %s", resp.StatusCode, b)
	}
}
