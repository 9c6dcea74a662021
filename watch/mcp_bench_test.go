package watch_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// BenchmarkProbeMCPLevel: one probe of a watch on a loopback MCP server
// (mcp-go, 20 tools), TLS only and at the MCP level (initialize,
// notifications/initialized, tools/list, server/discover, DELETE of the
// session): what mcp: true adds per probe.
func BenchmarkProbeMCPLevel(b *testing.B) {
	p := testlab.NewPKI(b)
	var tools []string
	for i := range 20 {
		tools = append(tools, fmt.Sprintf("tool_%02d", i))
	}
	lab := testlab.ServeMCP(b, p, "bench", tools...)
	pr := labProber(p, nil)
	for _, mcp := range []bool{false, true} {
		name := map[bool]string{false: "tls", true: "mcp"}[mcp]
		b.Run(name, func(b *testing.B) {
			rec := store.Record{ID: "w_bench", Target: probe.TargetInfo{Host: testlab.DefaultHost, Port: lab.Port, IP: "127.0.0.1"},
				Path: "/mcp", TimeoutMS: 5000, MCP: mcp}
			for b.Loop() {
				rep, err := pr.Run(context.Background(), &rec, p.Now)
				if err != nil || !rep.Trusted || (mcp && rep.MCP == nil) {
					b.Fatalf("probe: %v %+v", err, rep.Findings)
				}
			}
		})
	}
}
