package tools

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/auth"
)

// The scope map is the inventory's annotations, not a second list.
func TestToolScopes(t *testing.T) {
	scopes := ToolScopes()
	for _, tl := range AllTools(Deps{}) {
		want := auth.ScopeWrite
		if *tl.Def.Annotations.ReadOnlyHint {
			want = auth.ScopeRead
		}
		if scopes[tl.Def.Name] != want {
			t.Errorf("%s needs %q, want %q", tl.Def.Name, scopes[tl.Def.Name], want)
		}
	}
	for _, w := range []string{"watch_endpoint", "unwatch_endpoint"} {
		if scopes[w] != auth.ScopeWrite {
			t.Errorf("%s needs %q, want %s", w, scopes[w], auth.ScopeWrite)
		}
	}
	if scopes["check_tls"] != auth.ScopeRead || len(scopes) != len(AllTools(Deps{})) {
		t.Errorf("scopes %v", scopes)
	}
}

// serve --read-only: only read tools are listed, the others cannot be
// called, and the instructions do not offer them.
func TestReadOnlyServer(t *testing.T) {
	srv := NewServer(Deps{Probe: fakeProbe}, ServerOptions{ReadOnly: true})
	t.Cleanup(srv.Close)
	c, err := client.NewInProcessClient(srv.MCPServer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "read-only-test", Version: "1"}
	ir, err := c.Initialize(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ir.Instructions, "watch_endpoint") || !strings.Contains(ir.Instructions, "read-only") {
		t.Errorf("read-only instructions: %q", ir.Instructions)
	}
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
		if !*tl.Annotations.ReadOnlyHint {
			t.Errorf("read-only server lists %s", tl.Name)
		}
	}
	for _, want := range []string{"check_tls", "list_watches", "list_expiring", "get_history"} {
		if !slices.Contains(names, want) {
			t.Errorf("read-only server does not list %s (lists %v)", want, names)
		}
	}
	for _, w := range []string{"watch_endpoint", "unwatch_endpoint"} {
		req := mcp.CallToolRequest{}
		req.Params.Name = w
		req.Params.Arguments = map[string]any{"target": "example.com", "id": "w_1"}
		res, err := c.CallTool(ctx, req)
		if err == nil && !res.IsError {
			t.Errorf("%s callable on a read-only server", w)
		}
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "check_tls"
	req.Params.Arguments = map[string]any{"target": "example.com"}
	if res, err := c.CallTool(ctx, req); err != nil || res.IsError {
		t.Errorf("check_tls on a read-only server: %v %v", err, res)
	}
}

// A change made with an OAuth token names its subject in the log; without
// one (stdio, static token) nothing is claimed.
func TestAuditNamesTheSubject(t *testing.T) {
	var buf bytes.Buffer
	deps := Deps{Watch: newFakeWatch(t), Probe: fakeProbe, Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	var add, remove Tool
	for _, tl := range AllTools(deps) {
		switch tl.Def.Name {
		case "watch_endpoint":
			add = tl
		case "unwatch_endpoint":
			remove = tl
		}
	}
	alice := auth.WithPrincipal(context.Background(), auth.Principal{Subject: "alice", Scopes: []string{auth.ScopeWrite}})
	for _, c := range []struct {
		ctx  context.Context
		tool Tool
		args map[string]any
		want string
	}{
		{context.Background(), add, map[string]any{"target": "a.example.com"}, ""},
		{alice, add, map[string]any{"target": "b.example.com"}, `msg="watch added" id=w_`},
		{alice, remove, map[string]any{"target": "b.example.com"}, `msg="watch removed" id=w_`},
	} {
		buf.Reset()
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = c.tool.Def.Name, c.args
		res, err := c.tool.Handler(c.ctx, req)
		if err != nil || res.IsError {
			t.Fatalf("%s %v: %v %+v", c.tool.Def.Name, c.args, err, res)
		}
		got := buf.String()
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) || (c.want != "" && !strings.Contains(got, " target=b.example.com:443 by=alice")) {
			t.Errorf("%s %v logged %q, want %q with the target and by=alice", c.tool.Def.Name, c.args, got, c.want)
		}
	}
	// The watch keeps who created it.
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "watch_endpoint", map[string]any{"target": "c.example.com"}
	if res, err := add.Handler(alice, req); err != nil || res.IsError {
		t.Fatalf("watch_endpoint: %v %+v", err, res)
	}
	l, _ := deps.Watch.List(context.Background(), "", 0)
	for _, w := range l.Watches {
		if want := map[string]string{"c.example.com": "alice"}[w.Target.Host]; w.CreatedBy != want {
			t.Errorf("%s: created_by %q, want %q", w.Target.Host, w.CreatedBy, want)
		}
	}
}
