package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Resource bounds under a hostile client, measured on the built binary
// (BENCHMARKS.md, section "Hostile clients"):
//
//	go test -run '^$' -bench 'Hostile' -benchtime 1x ./e2e/
//
// Each benchmark runs its scenario once per iteration and reports what the
// targets are about: the server's resident memory growth (from
// /proc/PID/status) or how long a legitimate client waits for an answer.

func benchServe(b *testing.B, extra ...string) *serveProc {
	b.Helper()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc to read the server's resident memory")
	}
	args := append([]string{"serve", "--db", filepath.Join(b.TempDir(), "tlswatch.db")}, extra...)
	p, err := launchServe(args)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.kill)
	return p
}

// rssMiB is the resident memory of process pid.
func rssMiB(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// post sends one JSON-RPC message and returns the status and the session.
func benchPost(b *testing.B, hc *http.Client, u, session, body string, hdr ...string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id")
}

const benchInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`

// BenchmarkHostileAbandonedSessions: 20,000 initialize without DELETE.
// Target: resident memory grows by less than 64 MB (the default cap; the
// second case lifts it, to show what the cap saves).
func BenchmarkHostileAbandonedSessions(b *testing.B) {
	for _, max := range []string{"1000", "100000"} {
		b.Run("max-sessions="+max, func(b *testing.B) { abandonSessions(b, "--max-sessions", max) })
	}
}

func abandonSessions(b *testing.B, extra ...string) {
	const sessions, workers = 20_000, 8
	for range b.N {
		p := benchServe(b, extra...)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
		benchPost(b, hc, p.url, "", benchInit)
		before := rssMiB(b, p.cmd.Process.Pid)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < sessions; i += workers {
					if code, id := benchPost(b, hc, p.url, "", benchInit); code != http.StatusOK || id == "" {
						b.Errorf("initialize %d: %d", i, code)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(rssMiB(b, p.cmd.Process.Pid)-before, "rss-growth-MiB")
		p.kill()
	}
}

// BenchmarkHostileHugeSubscriptionURI: 50 resources/subscribe with a
// 1 MiB URI. Target: each refused, memory grows by less than 16 MB.
func BenchmarkHostileHugeSubscriptionURI(b *testing.B) {
	uri := "tlswatch://watches/" + strings.Repeat("a", 1<<20)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":%q}}`, uri)
	for range b.N {
		p := benchServe(b)
		hc := &http.Client{}
		_, session := benchPost(b, hc, p.url, "", benchInit)
		before := rssMiB(b, p.cmd.Process.Pid)
		refused := 0
		for range 50 {
			req, _ := http.NewRequest(http.MethodPost, p.url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Mcp-Session-Id", session)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(out, []byte(`"error"`)) {
				refused++
			}
		}
		if refused != 50 {
			b.Errorf("%d of 50 refused", refused)
		}
		b.ReportMetric(rssMiB(b, p.cmd.Process.Pid)-before, "rss-growth-MiB")
		p.kill()
	}
}

// legitimate is how long a new client takes to initialize and list tools.
func legitimate(b *testing.B, u string, hdr ...string) time.Duration {
	b.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	code, session := benchPost(b, hc, u, "", benchInit, hdr...)
	if code != http.StatusOK {
		b.Fatalf("initialize: %d", code)
	}
	if code, _ := benchPost(b, hc, u, session, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, hdr...); code != http.StatusOK {
		b.Fatalf("tools/list: %d", code)
	}
	return time.Since(start)
}

// BenchmarkHostileIdleConnections: 2,000 connections that send nothing.
// Target: a legitimate client still gets its answers in under 1 s, under
// the default connection bound and under one below 2,000 (the longest
// waiting connections are then closed to make room).
func BenchmarkHostileIdleConnections(b *testing.B) {
	for _, max := range []string{"0", "1024"} {
		b.Run("max-connections="+max, func(b *testing.B) { idleConnections(b, "--max-connections", max) })
	}
}

func idleConnections(b *testing.B, extra ...string) {
	for range b.N {
		p := benchServe(b, extra...)
		pu, _ := url.Parse(p.url)
		var conns []net.Conn
		for range 2000 {
			c, err := net.DialTimeout("tcp", pu.Host, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		b.ReportMetric(float64(legitimate(b, p.url).Microseconds())/1000, "answer-ms")
		for _, c := range conns {
			c.Close()
		}
		p.kill()
	}
}

// BenchmarkHostileSlowBodiesWithoutToken: 1,100 connections that send a
// POST's headers without a token, then drip its body. Target: each is
// refused at once, and the token holder is answered meanwhile.
func BenchmarkHostileSlowBodiesWithoutToken(b *testing.B) {
	const token = "bench-token"
	for range b.N {
		p := benchServe(b, "--token", token)
		pu, _ := url.Parse(p.url)
		var conns []net.Conn
		refused := 0
		for range 1100 {
			c := slowBody(b, pu, 200_000, "")
			conns = append(conns, c)
		}
		b.ReportMetric(float64(legitimate(b, p.url, "Authorization", "Bearer "+token).Microseconds())/1000, "answer-ms")
		for _, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == http.StatusUnauthorized {
				refused++
			}
			c.Close()
		}
		b.ReportMetric(float64(refused), "refused-of-1100")
		p.kill()
	}
}
