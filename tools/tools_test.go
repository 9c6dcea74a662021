package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

var update = flag.Bool("update", false, "rewrite testdata/tools.golden.json")

// TestGoldenTools snapshots every tool's JSON definition as shipped (what
// tools/list sends), so a schema change is a reviewed diff.
func TestGoldenTools(t *testing.T) {
	var defs []mcp.Tool
	for _, tl := range AllTools(Deps{}) {
		defs = append(defs, tl.Def)
	}
	got, err := json.MarshalIndent(defs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "tools.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tools -run TestGoldenTools -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("tool definitions differ from %s; if intended, run go test ./tools -run TestGoldenTools -update", path)
	}
}

// TestInventory checks the whole inventory at once.
func TestInventory(t *testing.T) {
	AllTools(Deps{})
	schemaErrMu.Lock()
	for _, err := range schemaErrors {
		t.Errorf("schema not derived: %v", err)
	}
	schemaErrMu.Unlock()
	wantNames := []string{"check_tls", "inspect_chain", "inspect_certificate", "check_mcp_endpoint", "scan_endpoints", "watch_endpoint", "unwatch_endpoint",
		"list_watches", "list_expiring", "get_history"}
	seen := map[string]bool{}
	for _, tl := range AllTools(Deps{}) {
		d := tl.Def
		if seen[d.Name] {
			t.Errorf("duplicate tool %s", d.Name)
		}
		seen[d.Name] = true
		if tl.Handler == nil {
			t.Errorf("%s: no handler", d.Name)
		}
		if len(d.Description) < 40 {
			t.Errorf("%s: description too short: %q", d.Name, d.Description)
		}
		raw, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		var m struct {
			InputSchema  map[string]any  `json:"inputSchema"`
			OutputSchema map[string]any  `json:"outputSchema"`
			Annotations  map[string]any  `json:"annotations"`
			Extra        json.RawMessage `json:"-"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for kind, s := range map[string]map[string]any{"inputSchema": m.InputSchema, "outputSchema": m.OutputSchema} {
			if s["type"] != "object" {
				t.Errorf("%s: %s type = %v, want object", d.Name, kind, s["type"])
			}
			for _, k := range []string{"anyOf", "oneOf", "allOf", "not", "$ref"} {
				if _, ok := s[k]; ok {
					t.Errorf("%s: %s has top-level %s", d.Name, kind, k)
				}
			}
		}
		props, _ := m.InputSchema["properties"].(map[string]any)
		for name, p := range props {
			if desc, _ := p.(map[string]any)["description"].(string); desc == "" {
				t.Errorf("%s: input property %s has no description", d.Name, name)
			}
		}
		checkPortableInput(t, d.Name, "inputSchema", m.InputSchema)
		checkNoBareSchema(t, d.Name, "outputSchema", m.OutputSchema)
		for _, h := range []string{"title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"} {
			if _, ok := m.Annotations[h]; !ok {
				t.Errorf("%s: annotation %s not set", d.Name, h)
			}
		}
	}
	for _, n := range wantNames {
		if !seen[n] {
			t.Errorf("tool %s missing from inventory", n)
		}
	}
	// Annotations true to what each tool does.
	hints := map[string][4]bool{ // readOnly, destructive, idempotent, openWorld
		"check_tls":           {true, false, true, true},
		"inspect_chain":       {true, false, true, true},
		"inspect_certificate": {true, false, true, true},
		"check_mcp_endpoint":  {true, false, true, true},
		"scan_endpoints":      {true, false, true, true},
		"watch_endpoint":      {false, false, true, true},
		"unwatch_endpoint":    {false, true, true, false},
		"list_watches":        {true, false, true, false},
		"list_expiring":       {true, false, true, false},
		"get_history":         {true, false, true, false},
	}
	for _, tl := range AllTools(Deps{}) {
		a := tl.Def.Annotations
		want, ok := hints[tl.Def.Name]
		if !ok {
			continue
		}
		got := [4]bool{*a.ReadOnlyHint, *a.DestructiveHint, *a.IdempotentHint, *a.OpenWorldHint}
		if got != want {
			t.Errorf("%s: hints (readOnly, destructive, idempotent, openWorld) = %v, want %v", tl.Def.Name, got, want)
		}
	}
}

// checkPortableInput walks an input schema: no "type" arrays (single-type
// dialects such as Gemini's reject them), every integer bounded by
// minimum and maximum, every node typed (or an anyOf of typed branches).
func checkPortableInput(t *testing.T, tool, path string, s map[string]any) {
	t.Helper()
	switch typ := s["type"].(type) {
	case []any:
		t.Errorf("%s: %s: type array %v", tool, path, typ)
	case string:
		if typ == "integer" && (s["minimum"] == nil || s["maximum"] == nil) {
			t.Errorf("%s: %s: integer without minimum and maximum", tool, path)
		}
	case nil:
		if s["anyOf"] == nil {
			t.Errorf("%s: %s: untyped schema", tool, path)
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for name, p := range props {
			checkPortableInput(t, tool, path+"."+name, p.(map[string]any))
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		checkPortableInput(t, tool, path+".items", items)
	}
	if branches, ok := s["anyOf"].([]any); ok {
		for i, b := range branches {
			checkPortableInput(t, tool, fmt.Sprintf("%s.anyOf[%d]", path, i), b.(map[string]any))
		}
	}
}

// checkNoBareSchema: every subschema is an object, never true or false
// (the Inspector's schema lint rejects them, and {} encodes as true).
func checkNoBareSchema(t *testing.T, tool, path string, s any) {
	t.Helper()
	m, ok := s.(map[string]any)
	if !ok {
		t.Errorf("%s: %s: bare schema %v", tool, path, s)
		return
	}
	for _, k := range []string{"properties", "$defs"} {
		sub, _ := m[k].(map[string]any)
		for name, p := range sub {
			checkNoBareSchema(t, tool, path+"."+name, p)
		}
	}
	if items, ok := m["items"]; ok {
		checkNoBareSchema(t, tool, path+".items", items)
	}
	branches, _ := m["anyOf"].([]any)
	for i, b := range branches {
		checkNoBareSchema(t, tool, fmt.Sprintf("%s.anyOf[%d]", path, i), b)
	}
}

// TestToolsListSize: tools/list as a client receives it stays small, so a
// client that compiles every schema is not slowed (it was 78 KB). get_history's
// output is described one level deep to fit (docs/history.md has the rest).
func TestToolsListSize(t *testing.T) {
	h := newHarness(t, Deps{}, "2025-11-25")
	res, err := h.c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	// 40,000 as clients count it; JavaScript's JSON.stringify (the
	// Inspector suite) counts some 40 bytes more than encoding/json.
	const max = 39_800
	if len(b) > max {
		t.Errorf("tools/list result is %d bytes, want at most %d", len(b), max)
	}
	t.Logf("tools/list: %d bytes for %d tools", len(b), len(res.Tools))
}

// --- in-process harness ---

type harness struct {
	t     *testing.T
	srv   *Server
	c     *client.Client
	notes chan mcp.JSONRPCNotification
}

func newHarness(t *testing.T, deps Deps, version string) *harness {
	t.Helper()
	if deps.Probe == nil {
		deps.Probe = fakeProbe
	}
	if deps.InspectChain == nil {
		deps.InspectChain = fakeInspect
	}
	if deps.MCPCheck == nil {
		deps.MCPCheck = fakeMCPCheck
	}
	srv := NewServer(deps, ServerOptions{ValidateOutput: true})
	t.Cleanup(srv.Close)
	var opts []client.ClientOption
	if version != "" {
		opts = append(opts, client.WithProtocolVersion(version))
	}
	c, err := client.NewInProcessClientWithOptions(srv.MCPServer, opts...)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: srv, c: c, notes: make(chan mcp.JSONRPCNotification, 100)}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		select {
		case h.notes <- n:
		default:
		}
	})
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "tools-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return h
}

func (h *harness) call(name string, args any) *mcp.CallToolResult {
	h.t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := h.c.CallTool(context.Background(), req)
	if err != nil {
		h.t.Fatalf("%s: protocol error: %v", name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func decode[T any](t *testing.T, res *mcp.CallToolResult) T {
	t.Helper()
	var v T
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("structuredContent %s: %v", b, err)
	}
	return v
}

func TestCheckTLS(t *testing.T) {
	h := newHarness(t, Deps{}, "2025-11-25")
	res := h.call("check_tls", map[string]any{"target": "https://mcp.example.com/mcp", "ip": "127.0.0.1", "timeout_ms": 5000})
	if res.IsError {
		t.Fatalf("isError: %s", text(res))
	}
	r := decode[probe.Report](t, res)
	if r.Status != probe.StatusOK || r.Target.Host != "mcp.example.com" || r.Target.IP != "127.0.0.1" || r.Target.Port != 443 {
		t.Errorf("report = %+v", r)
	}
	if got := text(res); !strings.HasPrefix(got, "mcp.example.com:443 — status ok") {
		t.Errorf("summary = %q", got)
	}

	res = h.call("check_tls", map[string]any{"target": "mail.example.com", "starttls": "smtp", "deep": true})
	if r := decode[probe.Report](t, res); res.IsError || r.Target.Port != 25 {
		t.Errorf("starttls smtp: port %d, %s", r.Target.Port, text(res))
	}

	res = h.call("inspect_chain", map[string]any{"target": "mcp.example.com:8443", "include_pem": true})
	if res.IsError {
		t.Fatalf("inspect_chain: %s", text(res))
	}
	if cr := decode[probe.ChainReport](t, res); len(cr.Certificates) != 1 || cr.Target.Port != 8443 || cr.Problems == nil {
		t.Errorf("chain report = %+v", cr)
	}

	res = h.call("check_mcp_endpoint", map[string]any{"url": "https://mcp.example.com/mcp"})
	if res.IsError || !strings.HasPrefix(text(res), "https://mcp.example.com/mcp — status ok; live MCP server fake, protocol 2025-11-25, 3 tools") {
		t.Errorf("check_mcp_endpoint: %q", text(res))
	}

	res = h.call("check_tls", map[string]any{"target": "expired.example.com"})
	if res.IsError {
		t.Fatalf("isError: %s", text(res))
	}
	if got := text(res); !strings.HasPrefix(got, "expired.example.com:443 — status down: expired (certificate expired 3 days ago)") {
		t.Errorf("summary = %q", got)
	}
}

func TestBadArguments(t *testing.T) {
	h := newHarness(t, Deps{Watch: newFakeWatch(t)}, "2025-11-25")
	cases := []struct {
		tool  string
		args  any
		field string
	}{
		{"check_tls", map[string]any{}, "target:"},
		{"check_tls", map[string]any{"target": ""}, "target:"},
		{"check_tls", map[string]any{"target": "example.com:70000"}, "target:"},
		{"check_tls", map[string]any{"target": "http://example.com"}, "target:"},
		{"check_tls", map[string]any{"target": "example.com", "timeout_ms": 70000}, "timeout_ms:"},
		{"check_tls", map[string]any{"target": "example.com", "timeout_ms": -1}, "timeout_ms:"},
		{"check_tls", map[string]any{"target": "example.com", "timeout_ms": "soon"}, "timeout_ms:"},
		{"check_tls", map[string]any{"target": "example.com", "timeout_ms": 1.5}, "timeout_ms:"},
		{"check_tls", map[string]any{"target": 42}, "target:"},
		{"check_tls", map[string]any{"target": "example.com", "ip": "not-an-ip"}, "ip:"},
		{"check_tls", map[string]any{"target": "example.com", "sni": "1.2.3.4"}, "sni:"},
		{"check_tls", map[string]any{"target": "example.com", "colour": "red"}, "colour:"},
		{"inspect_chain", map[string]any{"target": "example.com", "include_pem": "yes"}, "include_pem:"},
		{"inspect_certificate", map[string]any{}, "pem:"},
		{"check_tls", map[string]any{"target": "example.com", "starttls": "gopher"}, "starttls:"},
		{"check_tls", map[string]any{"target": "smtp://example.com", "starttls": "smtp"}, "starttls:"},
		{"check_tls", map[string]any{"target": "example.com", "deep": "yes"}, "deep:"},
		{"check_mcp_endpoint", map[string]any{}, "target:"},
		{"check_mcp_endpoint", map[string]any{"target": "http://mcp.example.com/mcp"}, "target:"},
		{"check_mcp_endpoint", map[string]any{"target": "https://mcp.example.com/mcp", "timeout_ms": 99999}, "timeout_ms:"},
		{"inspect_certificate", map[string]any{"pem": "not a certificate"}, "pem:"},
		{"scan_endpoints", map[string]any{"targets": []any{}}, "targets:"},
		{"scan_endpoints", map[string]any{"targets": []any{map[string]any{"target": "a.example"}, map[string]any{"target": "b:0"}}}, "targets[1].target:"},
		{"scan_endpoints", map[string]any{"targets": "a.example"}, "targets:"},
		{"watch_endpoint", map[string]any{"target": "example.com", "schedule": "every day"}, "schedule:"},
		{"watch_endpoint", map[string]any{"target": "example.com", "schedule": "@every 100ms"}, "schedule:"},
		{"watch_endpoint", map[string]any{"target": "example.com", "thresholds_days": []any{30, 0}}, "thresholds_days:"},
		{"watch_endpoint", map[string]any{"target": "example.com", "thresholds_days": []any{"36x"}}, "thresholds_days:"},
		{"watch_endpoint", map[string]any{"target": "example.com", "thresholds_days": []any{"101%"}}, "thresholds_days:"},
		{"watch_endpoint", map[string]any{"target": "example.com", "failure_threshold": 1000}, "failure_threshold:"},
		{"unwatch_endpoint", map[string]any{}, "id:"},
		{"unwatch_endpoint", map[string]any{"id": "w_nope"}, "id:"},
		{"unwatch_endpoint", map[string]any{"target": "nope.example"}, "target:"},
		{"list_expiring", map[string]any{"within_days": -1}, "within_days:"},
		{"get_history", map[string]any{}, "id:"},
		{"get_history", map[string]any{"id": "w_x", "limit": 100000}, "limit:"},
		{"get_history", map[string]any{"id": "w_nope"}, "id:"},
	}
	for _, c := range cases {
		res := h.call(c.tool, c.args)
		if !res.IsError {
			t.Errorf("%s %v: not isError: %s", c.tool, c.args, text(res))
			continue
		}
		if got := text(res); !strings.HasPrefix(got, c.field) {
			t.Errorf("%s %v: message %q does not start with %q", c.tool, c.args, got, c.field)
		}
	}
	// The server keeps answering.
	if res := h.call("check_tls", map[string]any{"target": "example.com"}); res.IsError {
		t.Errorf("valid call after bad ones: %s", text(res))
	}
}

func TestWatchUnavailable(t *testing.T) {
	h := newHarness(t, Deps{}, "2025-11-25")
	calls := map[string]map[string]any{
		"watch_endpoint":   {"target": "example.com"},
		"list_watches":     {},
		"list_expiring":    {},
		"get_history":      {"id": "w_1"},
		"unwatch_endpoint": {"id": "w_1"},
	}
	for name, args := range calls {
		res := h.call(name, args)
		if !res.IsError || !strings.Contains(text(res), "watching is not available") {
			t.Errorf("%s: %v %q", name, res.IsError, text(res))
		}
	}
	if res := h.call("check_tls", map[string]any{"target": "example.com"}); res.IsError {
		t.Errorf("check_tls without watcher: %s", text(res))
	}
}

// thresholds_days takes days, hours and shares of the lifetime, and the
// watch shows them back in canonical form: numbers for days, strings
// otherwise; list_expiring shows the share of lifetime left.
func TestWatchEndpointThresholds(t *testing.T) {
	h := newHarness(t, Deps{Watch: newFakeWatch(t)}, "2025-11-25")
	res := h.call("watch_endpoint", map[string]any{"target": "mcp.example.com", "thresholds_days": []any{"20%", 7, "36h", "30d"}})
	if res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	w := decode[map[string]any](t, res)
	if got, _ := json.Marshal(w["thresholds_days"]); string(got) != `[30,7,"36h","20%"]` {
		t.Errorf("thresholds_days = %s", got)
	}
	exp := decode[map[string]any](t, h.call("list_expiring", map[string]any{"within_days": 60}))
	ws, _ := exp["watches"].([]any)
	if len(ws) != 1 {
		t.Fatalf("list_expiring: %v", exp)
	}
	if pct, ok := ws[0].(map[string]any)["lifetime_left_pct"].(float64); !ok || pct <= 0 || pct >= 100 {
		t.Errorf("lifetime_left_pct = %v", ws[0].(map[string]any)["lifetime_left_pct"])
	}
}

func TestWatchTools(t *testing.T) {
	fw := newFakeWatch(t)
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	res := h.call("watch_endpoint", map[string]any{"target": "mcp.example.com", "schedule": "@every 1s"})
	if res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	w := decode[watch.Watch](t, res)
	if !strings.HasPrefix(w.ID, "w_") || w.Schedule != "@every 1s" || !slices.Equal(w.ThresholdsDays, probe.DefaultThresholds) || w.LastReport == nil {
		t.Errorf("watch = %+v", w)
	}

	res = h.call("list_watches", nil)
	if res.IsError {
		t.Fatalf("list_watches: %s", text(res))
	}
	if l := decode[WatchList](t, res); len(l.Watches) != 1 {
		t.Errorf("list = %+v", l)
	}

	res = h.call("list_expiring", map[string]any{})
	if res.IsError {
		t.Fatalf("list_expiring: %s", text(res))
	}
	var raw map[string]any
	_ = json.Unmarshal(mustJSON(t, res.StructuredContent), &raw)
	if raw["within_days"] != float64(30) {
		t.Errorf("within_days = %v", raw["within_days"])
	}
	if ws, ok := raw["watches"].([]any); !ok || len(ws) != 0 {
		t.Errorf("watches = %#v, want []", raw["watches"])
	}
	res = h.call("list_expiring", map[string]any{"within_days": 60})
	if l := decode[ExpiringList](t, res); l.WithinDays != 60 || len(l.Watches) != 1 {
		t.Errorf("expiring 60 = %+v", l)
	}

	res = h.call("get_history", map[string]any{"id": w.ID, "limit": 5})
	if res.IsError {
		t.Fatalf("get_history: %s", text(res))
	}
	if hist := decode[History](t, res); hist.ID != w.ID || len(hist.Reports) != 1 {
		t.Errorf("history = %+v", hist)
	}

	res = h.call("unwatch_endpoint", map[string]any{"target": "https://mcp.example.com"})
	if res.IsError {
		t.Fatalf("unwatch_endpoint: %s", text(res))
	}
	if u := decode[UnwatchResult](t, res); !u.Removed || u.Watch.ID != w.ID {
		t.Errorf("unwatch = %+v", u)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScanProgress(t *testing.T) {
	h := newHarness(t, Deps{}, "2025-11-25")
	req := mcp.CallToolRequest{}
	req.Params.Name = "scan_endpoints"
	req.Params.Arguments = map[string]any{"targets": []any{
		map[string]any{"target": "a.example"}, map[string]any{"target": "down.example"}, map[string]any{"target": "expired.example", "timeout_ms": 2000},
	}}
	req.Params.Meta = &mcp.Meta{ProgressToken: "scan-1"}
	res, err := h.c.CallTool(context.Background(), req)
	if err != nil || res.IsError {
		t.Fatalf("scan: %v %s", err, text(res))
	}
	out := decode[ScanResult](t, res)
	if out.Total != 3 || len(out.Reports) != 3 || out.Counts != (StatusCounts{OK: 1, Down: 2}) {
		t.Errorf("scan = %+v", out)
	}
	if out.Reports[1].Target.Host != "down.example" {
		t.Errorf("order not kept: %+v", out.Reports[1].Target)
	}
	deadline := time.After(5 * time.Second)
	var progress []float64
	for len(progress) < 3 {
		select {
		case n := <-h.notes:
			if n.Method == "notifications/progress" {
				if n.Params.AdditionalFields["progressToken"] != "scan-1" {
					t.Errorf("progress token = %v", n.Params.AdditionalFields["progressToken"])
				}
				var p float64
				_ = json.Unmarshal(mustJSON(t, n.Params.AdditionalFields["progress"]), &p)
				progress = append(progress, p)
			}
		case <-deadline:
			t.Fatalf("progress notifications: got %v", progress)
		}
	}
	if !slices.Equal(progress, []float64{1, 2, 3}) {
		t.Errorf("progress = %v", progress)
	}
}

func TestResources(t *testing.T) {
	fw := newFakeWatch(t)
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	h.call("watch_endpoint", map[string]any{"target": "mcp.example.com"})
	ctx := context.Background()
	for _, uri := range []string{URIWatches, URIExpiring, WatchURI(fw.id("mcp.example.com")), URIAlerts, URIAlerts + "?after=0&limit=10"} {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = uri
		res, err := h.c.ReadResource(ctx, req)
		if err != nil {
			t.Fatalf("read %s: %v", uri, err)
		}
		tc, ok := res.Contents[0].(mcp.TextResourceContents)
		if !ok || tc.MIMEType != "application/json" || !json.Valid([]byte(tc.Text)) {
			t.Errorf("%s: %#v", uri, res.Contents[0])
		}
	}
	tmpls, err := h.c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
	var raws []string
	for _, tp := range tmpls.ResourceTemplates {
		raws = append(raws, tp.URITemplate.Raw())
	}
	slices.Sort(raws)
	if want := []string{URIAlertsTemplate, URIExpiringPages, URIWatchTemplate, URIWatchesPages}; err != nil || !slices.Equal(raws, want) {
		t.Errorf("templates = %v, %v; want %v", raws, err, want)
	}
	prompts, err := h.c.ListPrompts(ctx, mcp.ListPromptsRequest{})
	if err != nil || len(prompts.Prompts) != len(AllPrompts(Deps{})) {
		t.Errorf("prompts = %+v, %v", prompts, err)
	}
	gp := mcp.GetPromptRequest{}
	gp.Params.Name = "diagnose_endpoint"
	gp.Params.Arguments = map[string]string{"target": "https://mcp.example.com/mcp"}
	if pr, err := h.c.GetPrompt(ctx, gp); err != nil || len(pr.Messages) != 1 {
		t.Errorf("get prompt: %+v, %v", pr, err)
	}
	creq := mcp.CompleteRequest{}
	creq.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "diagnose_endpoint"}
	creq.Params.Argument.Name, creq.Params.Argument.Value = "target", "mcp."
	if cr, err := h.c.Complete(ctx, creq); err != nil || !slices.Equal(cr.Completion.Values, []string{"mcp.example.com:443"}) {
		t.Errorf("complete target: %+v, %v", cr, err)
	}
	req := mcp.ReadResourceRequest{}
	req.Params.URI = WatchURI("w_nope")
	if _, err := h.c.ReadResource(ctx, req); err == nil {
		t.Error("reading an unknown watch succeeded")
	}
}

// waitNote waits for a notification matching method and uri.
func waitNote(t *testing.T, ch <-chan mcp.JSONRPCNotification, method, uri string, within time.Duration) mcp.JSONRPCNotification {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case n := <-ch:
			if n.Method == method && (uri == "" || n.Params.AdditionalFields["uri"] == uri) {
				return n
			}
		case <-deadline:
			t.Fatalf("no %s %s within %s", method, uri, within)
		}
	}
}

func TestSubscriptionsLegacy(t *testing.T) {
	fw, srv := watchServer(t)
	ctx := context.Background()
	a, aNotes := inProcess(t, srv, "2025-11-25")
	_, bNotes := inProcess(t, srv, "2025-11-25")

	req := mcp.CallToolRequest{}
	req.Params.Name = "watch_endpoint"
	req.Params.Arguments = map[string]any{"target": "mcp.example.com"}
	if res, err := a.CallTool(ctx, req); err != nil || res.IsError {
		t.Fatalf("watch_endpoint: %v %v", err, res)
	}
	// Adding a watch tells everybody the list changed.
	waitNote(t, aNotes, "notifications/resources/list_changed", "", 2*time.Second)
	waitNote(t, bNotes, "notifications/resources/list_changed", "", 2*time.Second)

	sub := mcp.SubscribeRequest{}
	sub.Params.URI = WatchURI(fw.id("mcp.example.com"))
	if err := a.Subscribe(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelWarning}}); err != nil {
		t.Fatal(err)
	}
	fw.fire("mcp.example.com", watch.EventStageCrossed, "warning")
	waitNote(t, aNotes, "notifications/resources/updated", sub.Params.URI, 2*time.Second)
	n := waitNote(t, aNotes, "notifications/message", "", 2*time.Second)
	if fmt.Sprint(n.Params.AdditionalFields["level"]) != "warning" {
		t.Errorf("alert level = %v", n.Params.AdditionalFields["level"])
	}
	// b did not subscribe (and left its log level at the default, error):
	// it hears nothing of this event.
	select {
	case n := <-bNotes:
		if n.Method == "notifications/resources/updated" || n.Method == "notifications/message" {
			t.Errorf("unsubscribed session got %s %v", n.Method, n.Params.AdditionalFields)
		}
	case <-time.After(200 * time.Millisecond):
	}

	unsub := mcp.UnsubscribeRequest{}
	unsub.Params.URI = sub.Params.URI
	if err := a.Unsubscribe(ctx, unsub); err != nil {
		t.Fatal(err)
	}
	if subs, _ := srv.Subs.Subscribers(); len(subs) != 0 {
		t.Errorf("after unsubscribe: %v", subs)
	}
}

// recordingSink is a transport's SessionSink as the registry sees it.
type recordingSink struct {
	mu  sync.Mutex
	got []string // "session method uri-or-level"
}

func (r *recordingSink) Notify(id string, n mcp.JSONRPCNotification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	what := fmt.Sprint(n.Params.AdditionalFields["uri"])
	if n.Method == "notifications/message" {
		what = fmt.Sprint(n.Params.AdditionalFields["level"])
	}
	r.got = append(r.got, id+" "+n.Method+" "+what)
	return nil
}

func (r *recordingSink) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	slices.Sort(got)
	return got
}

// TestSubscriptionsRoute: once a transport routes them to its sink, the
// notifications of legacy sessions go there and not into the SDK's session
// channels, to exactly the sessions the registry names, log alerts by each
// session's level; routed back, they take the channels again.
func TestSubscriptionsRoute(t *testing.T) {
	fw, srv := watchServer(t)
	ctx := context.Background()
	a, aNotes := inProcess(t, srv, "2025-11-25")
	_, bNotes := inProcess(t, srv, "2025-11-25")
	// The Add's Change reaches the server on the hub's goroutine: its
	// update of the collection, the last thing it sends, is the barrier
	// after which nothing of the Add can land among the routed ones.
	if err := a.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: URIWatches}}); err != nil {
		t.Fatal(err)
	}
	fw.Add(ctx, watch.Spec{Target: "mcp.example.com"})
	waitNote(t, aNotes, "notifications/resources/updated", URIWatches, 2*time.Second)
	waitNote(t, bNotes, "notifications/resources/list_changed", "", 2*time.Second)
	if err := a.Unsubscribe(ctx, mcp.UnsubscribeRequest{Params: mcp.UnsubscribeParams{URI: URIWatches}}); err != nil {
		t.Fatal(err)
	}
	uri := WatchURI(fw.id("mcp.example.com"))
	if err := a.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelWarning}}); err != nil {
		t.Fatal(err)
	}
	subs, _ := srv.Subs.Subscribers()
	var aID string
	for id := range subs {
		aID = id
	}
	rec := &recordingSink{}
	srv.Subs.Route(rec)

	fw.fire("mcp.example.com", watch.EventStageCrossed, "warning")
	want := []string{aID + " notifications/message warning", aID + " notifications/resources/updated " + uri}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("a warning: %q, want %q", got, want)
	}
	// b never sent logging/setLevel: even a critical alert is not a log
	// message for it (DESIGN: only sessions that set a level get them).
	fw.fire("mcp.example.com", watch.EventStatusChanged, "critical")
	want = []string{aID + " notifications/message critical", aID + " notifications/resources/updated " + uri}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("a critical alert: %q, want %q", got, want)
	}
	select {
	case n := <-aNotes:
		t.Errorf("routed, yet the SDK channel got %s", n.Method)
	case n := <-bNotes:
		t.Errorf("routed, yet the SDK channel got %s", n.Method)
	default:
	}

	srv.Subs.Route(nil)
	fw.fire("mcp.example.com", watch.EventRotated, "info")
	waitNote(t, aNotes, "notifications/resources/updated", uri, 2*time.Second)
	if got := rec.take(); len(got) != 0 {
		t.Errorf("routed back, yet the sink got %q", got)
	}
}

func TestSubscriptionsModern(t *testing.T) {
	fw, srv := watchServer(t)
	ctx := context.Background()
	c, notes := inProcess(t, srv, "2026-07-28")
	if c.ProtocolVersion() != "2026-07-28" {
		t.Skipf("in-process client negotiated %s", c.ProtocolVersion())
	}
	fw.Add(ctx, watch.Spec{Target: "mcp.example.com"})
	// 2026-07-28: the log level travels in the listen request's _meta; even
	// so, a listen stream never carries notifications/message.
	if err := c.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelWarning}}); err != nil {
		t.Fatal(err)
	}
	stop, err := c.ListenAsync(ctx, mcp.SubscriptionFilter{ResourceSubscriptions: []string{URIExpiring}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	waitFor(t, func() bool { _, n := srv.Subs.Subscribers(); return n == 1 })
	fw.fire("mcp.example.com", watch.EventStageCrossed, "warning")
	n := waitNote(t, notes, "notifications/resources/updated", URIExpiring, 2*time.Second)
	if n.Params.Meta[mcp.MetaKeySubscriptionID] == nil {
		t.Errorf("update not tagged with the subscription id: %+v", n.Params.Meta)
	}
	// A watch nobody listens to stays quiet.
	fw.Add(ctx, watch.Spec{Target: "other.example.com"})
	fw.fire("other.example.com", watch.EventRotated, "info")
	quiet := time.After(200 * time.Millisecond)
drain:
	for {
		select {
		case n := <-notes:
			if n.Method == "notifications/resources/updated" && n.Params.AdditionalFields["uri"] != URIExpiring {
				t.Errorf("unsubscribed uri delivered: %v", n.Params.AdditionalFields)
			}
			if n.Method == "notifications/resources/list_changed" {
				t.Error("list_changed delivered to a stream that did not opt in")
			}
			if n.Method == "notifications/message" {
				t.Errorf("notifications/message on a listen stream: %v", n.Params.AdditionalFields)
			}
		case <-quiet:
			break drain
		}
	}
	stop()
	waitFor(t, func() bool { _, n := srv.Subs.Subscribers(); return n == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPanicIsToolError(t *testing.T) {
	h := newHarness(t, Deps{Probe: func(context.Context, probe.Target, probe.Options) (probe.Report, error) { panic("boom") }}, "2025-11-25")
	res := h.call("check_tls", map[string]any{"target": "example.com"})
	if !res.IsError || !strings.Contains(text(res), "internal error in check_tls: boom") {
		t.Errorf("panic: %v %q", res.IsError, text(res))
	}
	if res := h.call("list_watches", nil); !res.IsError {
		t.Error("server stopped answering after a panic")
	}
}

func TestScanPanicIsContained(t *testing.T) {
	h := newHarness(t, Deps{Probe: func(_ context.Context, tg probe.Target, o probe.Options) (probe.Report, error) {
		if tg.Host == "bad.example" {
			panic("boom")
		}
		return fakeProbe(context.Background(), tg, o)
	}}, "2025-11-25")
	res := h.call("scan_endpoints", map[string]any{"targets": []any{map[string]any{"target": "ok.example"}, map[string]any{"target": "bad.example"}}})
	if res.IsError {
		t.Fatalf("scan: %s", text(res))
	}
	out := decode[ScanResult](t, res)
	if len(out.Reports) != 2 || len(out.Errors) != 1 || out.Errors[0].Index != 1 || out.Counts.OK != 1 {
		t.Errorf("scan = %+v", out)
	}
}

func TestProbeLimiter(t *testing.T) {
	l := newProbeLimiter(3, 2)
	srv := NewServer(Deps{Probe: fakeProbe}, ServerOptions{})
	ctxA := srv.WithContext(context.Background(), fakeSession("a"))
	ctxB := srv.WithContext(context.Background(), fakeSession("b"))
	var rel []func()
	for i := 0; i < 2; i++ {
		r, err := l.acquire(ctxA)
		if err != nil {
			t.Fatal(err)
		}
		rel = append(rel, r)
	}
	short, cancel := context.WithTimeout(ctxA, 20*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(short); err == nil {
		t.Fatal("a third probe in session a was admitted (per-session bound 2)")
	}
	r, err := l.acquire(ctxB)
	if err != nil {
		t.Fatalf("session b blocked by session a: %v", err)
	}
	rel = append(rel, r)
	short2, cancel2 := context.WithTimeout(ctxB, 20*time.Millisecond)
	defer cancel2()
	if _, err := l.acquire(short2); err == nil {
		t.Fatal("a fourth probe was admitted (server bound 3)")
	}
	for _, r := range rel {
		r()
	}
	if len(l.sessions) != 0 || len(l.global) != 0 {
		t.Errorf("slots leaked: sessions=%d global=%d", len(l.sessions), len(l.global))
	}
}

type fakeSession string

func (f fakeSession) Initialize()                                         {}
func (f fakeSession) Initialized() bool                                   { return true }
func (f fakeSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return nil }
func (f fakeSession) SessionID() string                                   { return string(f) }

// Agents often send scan_endpoints a plain list of names: strings are
// shorthand for {"target": ...}, and may be mixed with objects; an object
// with an unknown field is still refused, naming the entry.
func TestScanAcceptsTargetStrings(t *testing.T) {
	h := newHarness(t, Deps{Probe: fakeProbe}, "2025-11-25")
	res := h.call("scan_endpoints", map[string]any{"targets": []any{"a.example:8443", map[string]any{"target": "b.example", "sni": "c.example"}}})
	if res.IsError {
		t.Fatalf("scan: %s", text(res))
	}
	out := decode[ScanResult](t, res)
	if len(out.Reports) != 2 || out.Reports[0].Target.Host != "a.example" || out.Reports[0].Target.Port != 8443 || out.Reports[1].Target.SNI != "c.example" {
		t.Errorf("scan = %+v", out.Reports)
	}
	res = h.call("scan_endpoints", map[string]any{"targets": []any{"a.example", map[string]any{"target": "b.example", "bogus": 1}}})
	if !res.IsError || !strings.Contains(text(res), "targets") || !strings.Contains(text(res), "bogus") {
		t.Errorf("unknown field: isError %v %q", res.IsError, text(res))
	}
}

// A result past maxTextJSON keeps all its data in structuredContent but is
// not repeated as a text block; a small one is.
func TestStructuredResultTextCopy(t *testing.T) {
	small := structuredResult(map[string]any{"a": 1}, "sum")
	if len(small.Content) != 2 || small.Content[1].(mcp.TextContent).Text != `{"a":1}` {
		t.Errorf("small result content = %+v", small.Content)
	}
	big := map[string]string{"x": strings.Repeat("y", maxTextJSON)}
	res := structuredResult(big, "sum")
	txt := res.Content[1].(mcp.TextContent).Text
	if len(txt) > 200 || !strings.Contains(txt, "structuredContent") {
		t.Errorf("big result text block = %.200q", txt)
	}
	raw, ok := res.StructuredContent.(json.RawMessage)
	var back map[string]string
	if !ok || json.Unmarshal(raw, &back) != nil || len(back["x"]) != maxTextJSON {
		t.Errorf("big result lost its structuredContent")
	}
}
