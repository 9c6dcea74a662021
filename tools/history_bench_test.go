package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/owner"
	"github.com/tlswatch/tlswatch/watch/watchtest"
)

// get_history for a month of hourly data through a real MCP client: an
// mcp-go client over streamable HTTP (loopback) to the tools server over
// the real watch.Service, one watch with 45 days of hourly probes (a real
// Report each; a rotation, two short outages, a daily checkpoint), 30 days
// asked for:
//
//	go test -run '^$' -bench 'GetHistoryMonth' -count 5 ./tools/
func BenchmarkGetHistoryMonth(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tlswatch.db")
	id := fillHistory(b, path, watchtest.SeedReport(b))
	m, err := owner.Open(context.Background(), owner.Config{DBPath: path, Engine: watch.Config{NoScheduler: true}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	srv := NewServer(Deps{Watch: m}, ServerOptions{})
	defer srv.Close()
	hs := httptest.NewServer(server.NewStreamableHTTPServer(srv.MCPServer))
	defer hs.Close()
	tr, err := transport.NewStreamableHTTP(hs.URL)
	if err != nil {
		b.Fatal(err)
	}
	c := client.NewClient(tr)
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "bench", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		resolution string
		points     int
	}{{"raw", 719}, {"hour", 719}, {"day", 30}} { // 30 days back from a moment within the hour
		b.Run("resolution="+tc.resolution, func(b *testing.B) {
			req := mcp.CallToolRequest{}
			req.Params.Name = "get_history"
			req.Params.Arguments = map[string]any{"id": id, "since": "30d", "resolution": tc.resolution}
			var res *mcp.CallToolResult
			for b.Loop() {
				var err error
				if res, err = c.CallTool(ctx, req); err != nil || res.IsError {
					b.Fatalf("get_history: %v %+v", err, res)
				}
			}
			var h History
			raw, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(raw, &h); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(raw))/1024, "KiB")
			if n := len(h.Samples) + len(h.Aggregates); n < tc.points || len(h.Changes) == 0 {
				b.Fatalf("%d points, %d Reports; want %d points", n, len(h.Changes), tc.points)
			}
			b.ReportMetric(float64(len(h.Samples)+len(h.Aggregates)), "points")
			b.ReportMetric(float64(len(h.Changes)), "reports")
		})
	}
}

// fillHistory writes one watch with 45 days of hourly probes ending now and
// returns its id.
func fillHistory(b *testing.B, path string, rep probe.Report) string {
	db, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	now := time.Now().Truncate(time.Hour)
	start := now.Add(-45 * 24 * time.Hour)
	rec := store.Record{ID: "w_bench", Target: rep.Target, Schedule: "@every 1h", Thresholds: probe.DefaultThresholds,
		FailureThreshold: 3, CreatedAt: start, UpdatedAt: start, State: "up"}
	ups := []store.Update{{Record: rec, Create: true}}
	for h := 0; h < 45*24; h++ {
		r := rep
		r.CheckedAt = start.Add(time.Duration(h)*time.Hour + time.Duration(h%50)*time.Second)
		r.Timing.Handshake = 8 + float64(h%17)/4
		leaf := *rep.Leaf
		if h >= 20*24 {
			leaf.SHA256 = fmt.Sprintf("%064x", 2) // a rotation
		}
		leaf.DaysRemaining = probe.DaysRemaining(leaf.NotAfter, r.CheckedAt)
		r.Leaf = &leaf
		if h%400 == 7 {
			r.Status, r.Reachable, r.Trusted = probe.StatusDown, false, false
			r.Findings = []probe.Finding{{Code: "connection_refused", Severity: probe.SeverityCritical, Message: "refused"}}
		}
		rec.LastCheckedAt, rec.LastStatus = r.CheckedAt, string(r.Status)
		ups = append(ups, store.Update{Record: rec, Report: &r})
	}
	if _, err := db.Apply(ups); err != nil {
		b.Fatal(err)
	}
	return rec.ID
}
