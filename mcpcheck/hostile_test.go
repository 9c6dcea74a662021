package mcpcheck

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// TestHostileMCPEndpoints: an endpoint that completes TLS and then
// misbehaves at the HTTP/MCP layer cannot hold the check past its deadline
// or make it read without bound.
func TestHostileMCPEndpoints(t *testing.T) {
	pki := testlab.NewPKI(t)
	// done releases the handlers that block. httptest.Server.Close waits
	// for running handlers, so each subtest closes its own done in a cleanup
	// registered after the server's (cleanups run last-in first-out).
	var done chan struct{}
	var released atomic.Int64
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"sse stream that never answers", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-done:
			}
		}},
		{"endless sse notifications", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			ev := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n"
			for {
				if _, err := io.WriteString(w, ev); err != nil {
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-done:
					return
				default:
				}
			}
		}},
		{"100 MiB JSON body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"pad":"`)
			chunk := strings.Repeat("x", 64<<10)
			for sent := 0; sent < 100<<20; sent += len(chunk) {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		}},
		{"headers never come", func(w http.ResponseWriter, r *http.Request) {
			// Read the request first: net/http notices a client that goes
			// away only once the body is consumed.
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
				released.Add(1)
			case <-done:
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := serveHTTPS(t, pki, tc.h)
			done = make(chan struct{})
			t.Cleanup(func() { close(done) })
			opts := labOpts(pki)
			opts.TimeoutMS = 2000
			start := time.Now()
			r, err := Run(context.Background(), labURL(port, "/mcp"), opts)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v: is_mcp %v, error %q, findings %v", elapsed.Round(time.Millisecond), r.IsMCP, r.Error, r.Findings)
			if elapsed > 10*time.Second {
				t.Errorf("the check took %v with a 2 s deadline", elapsed)
			}
			if r.IsMCP || finding(r, probe.CodeNotMCP) == nil {
				t.Errorf("is_mcp %v, findings %v: want not_mcp", r.IsMCP, codes(r.Findings))
			}
			if tc.name == "headers never come" {
				// The check is over: its connection must be gone, or every
				// check of a hanging endpoint would keep one open.
				deadline := time.Now().Add(3 * time.Second)
				for released.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if released.Load() == 0 {
					t.Errorf("the server still sees the check's request 3 s after Run returned: the connection was left open")
				}
			}
		})
	}
}
