//go:build tlswatch_fixture_mcp

package store

// This generator writes testdata/schema2-mcp.db with the code of commit
// 6b75e30 (schema 2 with the thresholds group; MCPInfo kept the server as
// one string and nothing after the thresholds group), which the MCP-level
// watch code then reads (TestMCPStateOfEarlierRecords). It does not build
// against the current API on purpose (MCPInfo.Server is a string there):
// run it on a checkout of that commit.
//
//	git worktree add /tmp/tlswatch-6b75e30 6b75e30
//	cp store/fixture_mcp_test.go /tmp/tlswatch-6b75e30/store/
//	(cd /tmp/tlswatch-6b75e30 && go test -tags tlswatch_fixture_mcp -run TestWriteFixtureMCP ./store/ -mcpfixture "$PWD/store/testdata/schema2-mcp.db")
//
// The file holds one MCP-level watch with a token name, an hour threshold
// and the MCP info of its latest probe.

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

var mcpFixturePath = flag.String("mcpfixture", "", "write the MCP info fixture to this path")

func TestWriteFixtureMCP(t *testing.T) {
	if *mcpFixturePath == "" {
		t.Skip("no -mcpfixture path")
	}
	os.Remove(*mcpFixturePath)
	db, err := Open(*mcpFixturePath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	rec := Record{ID: "w_00000000000000a1", Target: probe.TargetInfo{Host: "mcp.example", Port: 443}, Path: "/mcp",
		Schedule: "@every 5m", Thresholds: []probe.Threshold{probe.Days(30), probe.Hours(36)}, FailureThreshold: 3,
		CreatedAt: at, UpdatedAt: at, State: "up", LastCheckedAt: at, LastStatus: "ok", NotAfter: at.AddDate(0, 0, 60),
		Fingerprint: "fp-mcp", Probe: &ProbeConfig{TokenName: "prod"}, MCP: true, CreatedBy: "alice",
		MCPInfo: &MCPInfo{ProtocolVersion: "2025-11-25", Server: "fixture-server", ToolCount: 3, ToolsHash: "sha256:abc", LatencyMS: 12.5}}
	rep := &probe.Report{CheckedAt: at, Status: probe.StatusOK, Findings: []probe.Finding{}, ExpiryStage: "none"}
	if _, err := db.Apply([]Update{{Record: rec, Create: true, Report: rep, Transition: true}}); err != nil {
		t.Fatal(err)
	}
}
