package mcpcheck

import (
	"context"
	"io"
	"net/http"
	"strings"
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
	done := make(chan struct{})
	t.Cleanup(func() { close(done) }) // runs before the servers close: releases the handlers
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
			select {
			case <-r.Context().Done():
			case <-done:
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := serveHTTPS(t, pki, tc.h)
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
		})
	}
}
