package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func (c *clock) tick() { c.t = c.t.Add(time.Second) }

func TestSessionEviction(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newSessionIDs(clk.now, 3)
	var evicted []string
	m.evict = func(id string) { evicted = append(evicted, id) }
	for _, id := range []string{"a", "b", "c"} {
		m.confirm(id)
		clk.tick()
	}
	// "a" is in a request (a GET stream): the idle "b" goes first.
	_, leaveA, _ := m.enter("a")
	m.confirm("d")
	if len(evicted) != 1 || evicted[0] != "b" || m.isLive("b") {
		t.Fatalf("evicted %v, want [b]", evicted)
	}
	clk.tick()
	if _, leave, ok := m.enter("c"); ok {
		leave() // c used just now
	}
	clk.tick()
	m.confirm("e") // idle: c (just used) and d (older): d goes
	if evicted[len(evicted)-1] != "d" {
		t.Errorf("evicted %v, want d last", evicted)
	}
	// All busy: the least recently used goes anyway.
	_, leaveC, _ := m.enter("c")
	_, leaveE, _ := m.enter("e")
	m.confirm("f")
	if evicted[len(evicted)-1] != "a" {
		t.Errorf("evicted %v, want a last (all busy, a least recent)", evicted)
	}
	leaveA()
	leaveC()
	leaveE()
	if n := m.count(); n != 3 {
		t.Errorf("%d live, want 3", n)
	}
	for _, id := range []string{"a", "b", "d"} {
		if _, err := m.Validate(id); err == nil {
			t.Errorf("evicted %s still validates", id)
		}
	}
}

func TestLimitsFlags(t *testing.T) {
	for _, c := range []struct {
		l    Limits
		want string
	}{
		{Limits{MaxSessions: 1, MaxSubscriptions: 1, MaxMessageBytes: 1 << 20}, ""},
		{Limits{MaxSessions: 0, MaxSubscriptions: 1, MaxMessageBytes: 1 << 20}, "--max-sessions"},
		{Limits{MaxSessions: 1, MaxSubscriptions: -1, MaxMessageBytes: 1 << 20}, "--max-subscriptions"},
		{Limits{MaxSessions: 1, MaxSubscriptions: 1, MaxConnections: 3, MaxMessageBytes: 1 << 20}, "--max-connections"},
		{Limits{MaxSessions: 1, MaxSubscriptions: 1, MaxMessageBytes: 100}, "--max-message-bytes"},
	} {
		err := c.l.check()
		if (err == nil) != (c.want == "") || (err != nil && !strings.HasPrefix(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.l, err, c.want)
		}
	}
	for nofile, want := range map[uint64]int{0: 4096, 1024: 768, 100000: 4096, 200: minMaxConnections} {
		if got := (Limits{}).withDefaults(nofile).MaxConnections; got != want {
			t.Errorf("descriptor limit %d: %d connections, want %d", nofile, got, want)
		}
	}
}

func TestConnLimiter(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimiter(inner, 2, slog.New(slog.DiscardHandler))
	defer l.Close()
	accept := func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	c1, s1 := accept()
	defer c1.Close()
	c2, s2 := accept()
	defer c2.Close()
	l.ConnState(s2, http.StateActive) // s1 waits, s2 serves
	c3, s3 := accept()                // evicts s1
	defer c3.Close()
	_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c1.Read(make([]byte, 1)); err == nil {
		t.Error("the waiting connection was not closed")
	}
	if n := l.open(); n != 2 {
		t.Errorf("%d open, want 2", n)
	}
	l.ConnState(s3, http.StateActive)
	// All serving: a new connection is closed, the busy ones stay.
	c4, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	_ = c4.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c4.Read(make([]byte, 1)); err == nil {
		t.Error("a connection over the bound was served")
	}
	for _, s := range []net.Conn{s2, s3} {
		l.ConnState(s, http.StateClosed)
	}
	if n := l.open(); n != 0 {
		t.Errorf("%d open after closing, want 0", n)
	}
	_ = s1
}

func TestHostGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := httptest.NewServer(hostGuard(ok))
	defer srv.Close()
	for host, want := range map[string]int{"": http.StatusTeapot, "localhost:9108": http.StatusTeapot, "[::1]:9108": http.StatusTeapot, "evil.example": http.StatusForbidden} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
}
