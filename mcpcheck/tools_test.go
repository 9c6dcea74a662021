package mcpcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

func noop(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultText("ok"), nil
}

// An MCP server whose tool list changes between two probes: the
// observation's hash changes and DiffTools says what was added, removed
// and changed. The list is paged (two tools a page), as large servers do.
func TestObserveToolListChanges(t *testing.T) {
	pki := testlab.NewPKI(t)
	s := server.NewMCPServer("drift", "1.0.0", server.WithToolCapabilities(true), server.WithPaginationLimit(2))
	s.AddTool(mcp.NewTool("search", mcp.WithDescription("search"), mcp.WithString("q", mcp.Required())), noop)
	s.AddTool(mcp.NewTool("fetch", mcp.WithDescription("fetch a URL"), mcp.WithString("url")), noop)
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("echo")), noop)
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(s, server.WithDisableLocalhostProtection(true)))
	port := serveHTTPS(t, pki, mux)

	o1, r1, err := Observe(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if err != nil || o1 == nil {
		t.Fatalf("first: %v; %+v findings %v", err, r1, codes(r1.Findings))
	}
	if o1.ToolCount != 3 || o1.Server != (ServerInfo{Name: "drift", Version: "1.0.0"}) || o1.ProtocolVersion != ProtocolVersion || o1.LatencyMS <= 0 || len(o1.ToolsHash) != len("sha256:")+64 {
		t.Errorf("observation %+v", o1)
	}
	if names := toolNames(o1.Tools); !slices.Equal(names, []string{"echo", "fetch", "search"}) {
		t.Errorf("tools %v", names)
	}
	again, _, _ := Observe(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if again == nil || again.ToolsHash != o1.ToolsHash {
		t.Fatalf("the hash is not stable between two probes of the same server: %+v vs %+v", again, o1)
	}

	s.DeleteTools("fetch")
	s.AddTool(mcp.NewTool("search", mcp.WithDescription("search"), mcp.WithString("q", mcp.Required()), mcp.WithNumber("limit")), noop)
	s.AddTool(mcp.NewTool("delete_everything", mcp.WithDescription("new")), noop)
	o2, r2, _ := Observe(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if o2 == nil {
		t.Fatalf("second: %+v", r2)
	}
	if o2.ToolsHash == o1.ToolsHash || o2.ToolCount != 3 {
		t.Errorf("hash unchanged or count wrong: %+v", o2)
	}
	got := DiffTools(o1.Tools, o2.Tools)
	want := ToolsChange{Added: []string{"delete_everything"}, Removed: []string{"fetch"}, Changed: []string{"search"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("diff %+v, want %+v", got, want)
	}
	if got.String() != "added delete_everything; removed fetch; changed search" {
		t.Errorf("wording %q", got.String())
	}
	if !DiffTools(o2.Tools, o2.Tools).Empty() {
		t.Error("a list differs from itself")
	}
}

func toolNames(ts []ToolDigest) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

// The digest ignores key order, whitespace and list order, cosmetic fields
// (title, annotations, _meta), and sees a description or schema change.
func TestDigestTools(t *testing.T) {
	base := []string{
		`{"name":"a","description":"d","inputSchema":{"type":"object","properties":{"x":{"type":"string"}}}}`,
		`{"name":"b","inputSchema":{"type":"object"}}`,
	}
	raw := func(ss ...string) []json.RawMessage {
		var out []json.RawMessage
		for _, s := range ss {
			out = append(out, json.RawMessage(s))
		}
		return out
	}
	_, h0, err := digestTools(raw(base...))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		tools []string
		same  bool
	}{
		{"reordered list", []string{base[1], base[0]}, true},
		{"reordered keys and spaces", []string{`{ "inputSchema": {"properties":{"x":{"type":"string"}}, "type":"object"}, "description":"d", "name":"a"}`, base[1]}, true},
		{"title, annotations and _meta", []string{`{"name":"a","title":"A","annotations":{"readOnlyHint":true},"_meta":{"k":1},"description":"d","inputSchema":{"type":"object","properties":{"x":{"type":"string"}}}}`, base[1]}, true},
		{"description", []string{`{"name":"a","description":"now also deletes files","inputSchema":{"type":"object","properties":{"x":{"type":"string"}}}}`, base[1]}, false},
		{"input schema", []string{`{"name":"a","description":"d","inputSchema":{"type":"object","properties":{"x":{"type":"number"}}}}`, base[1]}, false},
		{"output schema added", []string{base[0], `{"name":"b","inputSchema":{"type":"object"},"outputSchema":{"type":"object"}}`}, false},
		{"tool removed", []string{base[0]}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, h, err := digestTools(raw(tc.tools...))
			if err != nil {
				t.Fatal(err)
			}
			if (h == h0) != tc.same {
				t.Errorf("same hash %v, want %v", h == h0, tc.same)
			}
		})
	}
	if _, _, err := digestTools(raw(`{"description":"no name"}`)); err == nil {
		t.Error("a tool without a name was digested")
	}
}

// A 2026-07-28-only server (no initialize) is observed through
// server/discover and a modern tools/list.
func TestObserveModernOnlyServer(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := readRPC(r)
		w.Header().Set("Content-Type", "application/json")
		modern := r.Header.Get("Mcp-Protocol-Version") == ModernProtocolVersion && r.Header.Get("Mcp-Method") == req.Method &&
			req.Params.Meta["io.modelcontextprotocol/protocolVersion"] == ModernProtocolVersion && r.Header.Get("Mcp-Session-Id") == ""
		switch {
		case !modern:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32601,"message":"removed"}}`, req.ID)
		case req.Method == "server/discover":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"modern","version":"9"}}}}`, req.ID)
		case req.Method == "tools/list":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"tools":[{"name":"t1","inputSchema":{"type":"object"}}]}}`, req.ID)
		}
	}))
	o, r, err := Observe(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if err != nil || o == nil {
		t.Fatalf("%v: %+v %v", err, r, codes(r.Findings))
	}
	if o.ProtocolVersion != ModernProtocolVersion || o.Server.Name != "modern" || o.ToolCount != 1 || r.Status != probe.StatusOK {
		t.Errorf("observation %+v", o)
	}
}

// An endpoint that answers TLS but not MCP gives no observation: for a
// watch, a failed probe.
func TestObserveNotMCP(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	o, r, err := Observe(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if err != nil || o != nil || finding(r, probe.CodeNotMCP) == nil {
		t.Errorf("err %v observation %+v findings %v", err, o, codes(r.Findings))
	}
}

// A server whose pages never end is cut off; one that repeats its cursor
// too.
func TestToolsPagingBounds(t *testing.T) {
	pki := testlab.NewPKI(t)
	for _, tc := range []struct {
		name, cursor, want string
	}{
		{"endless pages", "fresh", "more than 50 pages"},
		{"repeated cursor", "same", "repeats its nextCursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				req := readRPC(r)
				w.Header().Set("Content-Type", "application/json")
				switch req.Method {
				case "initialize":
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":"x","version":"1"},"capabilities":{"tools":{}}}}`)
				case "tools/list":
					n++
					next := tc.cursor
					if tc.cursor == "fresh" {
						next = fmt.Sprint(n)
					}
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"tools":[{"name":"t%d"}],"nextCursor":%q}}`, req.ID, n, next)
				default:
					w.WriteHeader(http.StatusAccepted)
				}
			}))
			o, r, _ := Observe(context.Background(), labURL(port, "/mcp"), labOpts(pki))
			if o != nil || r.ToolsListed != nil || !strings.Contains(r.ToolsError, tc.want) {
				t.Errorf("observation %+v tools_error %q", o, r.ToolsError)
			}
		})
	}
}

// rpcRequest is what a lab handler needs of a JSON-RPC request.
type rpcRequest struct {
	ID     int    `json:"id"`
	Method string `json:"method"`
	Params struct {
		Meta map[string]any `json:"_meta"`
	} `json:"params"`
}

func readRPC(r *http.Request) rpcRequest {
	var req rpcRequest
	json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req)
	return req
}
