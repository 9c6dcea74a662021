package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The hostile client (real HTTP and stdio against the built binary): every
// resource a client can make the server hold is bounded, and the bound
// refuses or evicts instead of locking other clients out.

// TestHostileSessionCap: one session more than --max-sessions evicts the
// one idle longest; its client hears 404 on every method and starts over.
func TestHostileSessionCap(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs("--max-sessions", "3"))
	var cs []*rawClient
	for range 3 {
		c := &rawClient{t: t, url: u}
		c.initialize()
		cs = append(cs, c)
	}
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	// The first is the idlest once the other two have been used since.
	for _, c := range cs[1:] {
		if resp, b := c.do(http.MethodPost, ping, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("ping: %d %s", resp.StatusCode, b)
		}
	}
	extra := &rawClient{t: t, url: u}
	extra.initialize()
	for _, m := range []string{http.MethodPost, http.MethodGet} {
		body := ""
		if m == http.MethodPost {
			body = ping
		}
		if resp, b := cs[0].do(m, body, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s on the evicted session: %d, want 404: %.200s", m, resp.StatusCode, b)
		}
	}
	for i, c := range append(cs[1:], extra) {
		if resp, b := c.do(http.MethodPost, ping, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("session %d after the eviction: %d %s", i+1, resp.StatusCode, b)
		}
	}
	cs[0].session = ""
	cs[0].initialize() // and the evicted client starts a new one
}

// TestHostileSubscriptionCaps: a session subscribes to at most
// --max-subscriptions resources, each of them existing, each URI short.
func TestHostileSubscriptionCaps(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs("--max-subscriptions", "2"))
	c := &rawClient{t: t, url: u}
	c.initialize()
	sub := func(uri string) (int, string) {
		t.Helper()
		_, body := c.do(http.MethodPost, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":%q}}`, uri), nil)
		return rpcError(t, body)
	}
	for _, ok := range []string{"tlswatch://watches", "tlswatch://expiring", "tlswatch://watches"} {
		if code, msg := sub(ok); code != 0 {
			t.Errorf("subscribe %s: %d %s", ok, code, msg)
		}
	}
	huge := "tlswatch://watches/" + strings.Repeat("a", 1<<20)
	for uri, want := range map[string]int{
		"tlswatch://watches/w_nope": -32002,
		huge:                        -32602,
	} {
		code, msg := sub(uri)
		if code != want || len(msg) > 1024 {
			t.Errorf("subscribe %.60s…: %d %.200q, want %d with a short message", uri, code, msg, want)
		}
	}
	// A third existing resource is over the limit.
	id := addWatchRaw(t, c, l)
	if code, msg := sub("tlswatch://watches/" + id); code != -32602 || !strings.Contains(msg, "2 subscriptions") {
		t.Errorf("third subscription: %d %q, want -32602", code, msg)
	}
}

// addWatchRaw adds a watch of the lab's valid server through c.
func addWatchRaw(t *testing.T, c *rawClient, l *lab) string {
	t.Helper()
	_, body := c.do(http.MethodPost, fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"watch_endpoint","arguments":{"target":%q,"ip":%q}}}`, l.valid, l.validIP), nil)
	m := regexp.MustCompile(`\\"id\\":\\"(w_[0-9a-f]+)\\"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("watch_endpoint: %.400s", body)
	}
	return m[1]
}

// slowBody opens a connection that sends the headers of a POST announcing
// size bytes of body, then a few bytes of it, and returns the connection.
func slowBody(t testing.TB, u *url.URL, size int, auth string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", u.Path, u.Host, size)
	if auth != "" {
		req += "Authorization: Bearer " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n{\"jsonrpc\""); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHostileSlowBodyWithoutToken: a request without a valid token is
// refused from its headers, with the connection closed, however slowly its
// body comes; the token holder is served meanwhile.
func TestHostileSlowBodyWithoutToken(t *testing.T) {
	l := newLab(t)
	const token = "hostile-e2e-token"
	u := httpServer(t, l.serveArgs("--token", token))
	pu, _ := url.Parse(u)
	for i := range 20 {
		c := slowBody(t, pu, 100_000, "")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: no answer within 5s while its body drips: %v", i, err)
		}
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Errorf("connection %d: %d (close=%v), want 401 and the connection closed", i, resp.StatusCode, resp.Close)
		}
		c.Close()
	}
	holder := &rawClient{t: t, url: u}
	if resp, b := holder.do(http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}`,
		map[string]string{"Authorization": "Bearer " + token}); resp.StatusCode != http.StatusOK {
		t.Errorf("token holder: %d %s", resp.StatusCode, b)
	}
}

// TestHostileConnectionCap: idle connections beyond --max-connections make
// room (the longest waiting is closed); a legitimate client gets in.
func TestHostileConnectionCap(t *testing.T) {
	l := newLab(t)
	u := httpServer(t, l.serveArgs("--max-connections", "32"))
	pu, _ := url.Parse(u)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 64 {
		c, err := net.DialTimeout("tcp", pu.Host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	c := &rawClient{t: t, url: u}
	start := time.Now()
	c.initialize()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("initialize took %s behind 64 idle connections", d)
	}
	closed := 0
	for _, ic := range idle {
		_ = ic.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := ic.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed < 32 {
		t.Errorf("%d of 64 idle connections closed by the server, want at least 32", closed)
	}
}

// TestHostileStdio: requests before initialize are refused, an overlong
// line is refused without being kept, inputs echoed in errors are short.
func TestHostileStdio(t *testing.T) {
	l := newLab(t)
	args := l.serveArgs("--max-message-bytes", "1048576")
	c := stdioClient(t, legacyVersion, args) // initialized: the refusals below come after
	res := call(t, c, "watch_endpoint", map[string]any{"target": l.valid, "schedule": strings.Repeat("x", 1<<19)})
	if !res.IsError || len(text(res)) > 3000 || !strings.HasPrefix(text(res), "schedule:") {
		t.Errorf("a 512 KiB schedule: isError=%v, %d bytes of error: %.200q", res.IsError, len(text(res)), text(res))
	}
	res = call(t, c, "get_history", map[string]any{"id": strings.Repeat("w", 1<<19)})
	if !res.IsError || len(text(res)) > 3000 {
		t.Errorf("a 512 KiB id: isError=%v, %d bytes of error", res.IsError, len(text(res)))
	}
	// An over-long message: refused, and the server keeps serving.
	p := startStdioRaw(t, args)
	p.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	p.line()
	p.send(`{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"` + strings.Repeat("y", 2<<20) + `"}}`)
	if got := p.line(); !strings.Contains(got, "-32700") || !strings.Contains(got, "longer than") {
		t.Errorf("a 2 MiB line: %.300s", got)
	}
	p.send(`{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if got := p.line(); !strings.Contains(got, `"id":3`) || strings.Contains(got, "error") {
		t.Errorf("ping after the long line: %.300s", got)
	}
}

// stdioRaw is `serve` on stdio driven line by line.
type stdioRaw struct {
	t     *testing.T
	in    io.WriteCloser
	lines chan string
}

func startStdioRaw(t *testing.T, args []string) *stdioRaw {
	t.Helper()
	cmd := exec.Command(binary, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &stdioRaw{t: t, in: in, lines: make(chan string, 16)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("serve did not exit within 10s of stdin closing")
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	return p
}

func (p *stdioRaw) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		p.t.Fatal(err)
	}
}

// line is the next line the server writes.
func (p *stdioRaw) line() string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatal("stdout closed")
		}
		return l
	case <-time.After(20 * time.Second):
		p.t.Fatal("no line within 20s")
	}
	return ""
}

// TestHostileStdioBeforeInitialize: a 2025-11-25-era request before
// initialize is refused (-32600).
func TestHostileStdioBeforeInitialize(t *testing.T) {
	l := newLab(t)
	p := startStdioRaw(t, l.serveArgs())
	p.send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if got := p.line(); !strings.Contains(got, `"id":1`) || !strings.Contains(got, `-32600`) {
		t.Errorf("tools/list before initialize: %.300s", got)
	}
	p.send(`{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if got := p.line(); !strings.Contains(got, `"serverInfo"`) {
		t.Errorf("initialize: %.300s", got)
	}
	p.send(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	if got := p.line(); !strings.Contains(got, `"tools"`) {
		t.Errorf("tools/list after initialize: %.300s", got)
	}
}

// TestHostileMetricsListener: --metrics answers only with --metrics-token,
// only to a loopback Host on a loopback bind; beyond loopback without a
// token it warns loudly.
func TestHostileMetricsListener(t *testing.T) {
	l := newLab(t)
	p := startServe(t, l.serveArgs("--metrics", "127.0.0.1:0", "--metrics-token", "m-token"))
	re := regexp.MustCompile(`serving Prometheus metrics" url=(http://\S+/metrics)`)
	var metricsURL string
	for deadline := time.Now().Add(10 * time.Second); metricsURL == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := re.FindStringSubmatch(p.logs.String()); m != nil {
			metricsURL = m[1]
		}
	}
	if metricsURL == "" {
		t.Fatalf("no metrics URL logged:\n%s", p.logs.String())
	}
	for _, c := range []struct {
		auth, host string
		want       int
	}{
		{"", "", http.StatusUnauthorized},
		{"Bearer wrong", "", http.StatusUnauthorized},
		{"Bearer m-token", "", http.StatusOK},
		{"Bearer m-token", "rebound.example:80", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(http.MethodGet, metricsURL, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("auth %q host %q: %d, want %d", c.auth, c.host, resp.StatusCode, c.want)
		}
	}

	open := startServe(t, l.serveArgs("--metrics", "0.0.0.0:0"))
	if !strings.Contains(open.logs.String(), "serves /metrics on") || !strings.Contains(open.logs.String(), "WITHOUT a token") {
		t.Errorf("no warning for /metrics beyond loopback without a token:\n%s", open.logs.String())
	}
}
