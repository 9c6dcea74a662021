package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// mcpRecord is an MCP-level watch as it is after a long run: the server's
// info, a tool list of n tools and a full recent window (100 probes a
// minute apart).
func mcpRecord(n int) Record {
	r := Record{ID: "w_0123456789abcdef", Target: probe.TargetInfo{Host: "mcp.example.com", Port: 443}, Path: "/mcp",
		Schedule: "@every 1m", Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: t0, UpdatedAt: t0,
		State: "up", LastCheckedAt: t0, LastStatus: "ok", NotAfter: t0.Add(60 * 24 * time.Hour), Fingerprint: "ab", MCP: true,
		MCPInfo: &probe.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "example-mcp", Version: "1.4.2"},
			ToolCount: n, ToolsHash: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", LatencyMS: 41.25}}
	for i := range n {
		r.MCPTools = append(r.MCPTools, probe.MCPTool{Name: fmt.Sprintf("tool_number_%02d", i), Digest: "0123456789abcdef"})
	}
	for i := range 100 {
		r.MCPRecent = append(r.MCPRecent, RecentProbe{At: t0.Add(time.Duration(i) * time.Minute), OK: i%50 != 0, LatencyMS: 30 + float64(i%17)})
	}
	return r
}

// BenchmarkMCPRecordCodec: what an MCP-level watch's record costs to write
// (every probe) and to read (at start), and its size.
func BenchmarkMCPRecordCodec(b *testing.B) {
	for _, n := range []int{0, 20, 200} {
		r := mcpRecord(n)
		if n == 0 {
			r.MCP, r.MCPInfo, r.MCPRecent = false, nil, nil // a TLS-only watch, for comparison
		}
		raw := encodeRecord(&r)
		b.Run(fmt.Sprintf("tools=%d/encode", n), func(b *testing.B) {
			for b.Loop() {
				encodeRecord(&r)
			}
			b.ReportMetric(float64(len(raw)), "bytes/record")
		})
		b.Run(fmt.Sprintf("tools=%d/decode", n), func(b *testing.B) {
			var got Record
			for b.Loop() {
				if err := decodeRecord(raw, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
