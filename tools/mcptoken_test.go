package tools

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
)

// TestMCPTokenByName: check_mcp_endpoint authenticates with the operator's
// token named by token_name; the token reaches the endpoint and nothing
// else — not the result, not its summary, even from a server that echoes
// it. Unknown names and ambiguous arguments are errors naming the field.
func TestMCPTokenByName(t *testing.T) {
	const secret = "named-secret-7f3a9c2e5b1d4068aa"
	pki := testlab.NewPKI(t)
	var mu sync.Mutex
	var seen []string
	addr := testlab.ServeTLSHandler(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}}, echoingMCP(secret, func(auth string) {
		mu.Lock()
		seen = append(seen, auth)
		mu.Unlock()
	}))
	_, port, _ := net.SplitHostPort(addr)
	url := "https://" + testlab.DefaultHost + ":" + port + "/mcp"

	h := newHarness(t, Deps{
		MCPCheck:     mcpcheck.Run,
		ProbeOptions: probe.Options{Now: pki.Now, Roots: pki.Roots()},
		MCPTokens:    map[string]string{"prod": secret},
		Redact:       redact.New(secret),
	}, "2025-11-25")

	res := h.call("check_mcp_endpoint", map[string]any{"target": url, "ip": "127.0.0.1", "token_name": "prod"})
	if res.IsError {
		t.Fatalf("isError: %s", text(res))
	}
	out := decode[mcpcheck.Result](t, res)
	if !out.IsMCP || !out.TokenSent || !strings.HasPrefix(out.ServerName, "echo ") {
		t.Errorf("result %+v", out)
	}
	wire, _ := json.Marshal(res)
	if strings.Contains(string(wire), secret) {
		t.Errorf("the token is in the tool result: %s", wire)
	}
	mu.Lock()
	if len(seen) == 0 || seen[0] != "Bearer "+secret {
		t.Errorf("the endpoint saw %q", seen)
	}
	mu.Unlock()

	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"target": url, "token_name": "staging"}, `token_name: "staging" is not loaded (loaded: prod)`},
		{map[string]any{"target": url, "token_name": "prod", "token": "raw"}, "token_name: give token_name or token, not both"},
		{map[string]any{"target": url, "client_cert": "partner"}, "client_cert: "},
	} {
		res := h.call("check_mcp_endpoint", tc.args)
		if !res.IsError || !strings.HasPrefix(text(res), tc.want) {
			t.Errorf("%v: %q, want %q", tc.args, text(res), tc.want)
		}
	}

	// Without tokens loaded, the error says how to load one.
	h2 := newHarness(t, Deps{}, "2025-11-25")
	if res := h2.call("check_mcp_endpoint", map[string]any{"target": url, "token_name": "prod"}); !res.IsError || !strings.Contains(text(res), "--mcp-token") {
		t.Errorf("no tokens: %q", text(res))
	}
}

// echoingMCP is an MCP endpoint that wants "Bearer secret" and echoes the
// Authorization header it got wherever a server might: the challenge's
// realm, its server name, a tool's description, an error message. seen
// (when set) gets every Authorization header.
func echoingMCP(secret string, seen func(auth string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if seen != nil {
			seen(auth)
		}
		var req struct {
			ID     int    `json:"id"`
			Method string `json:"method"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case auth != "Bearer "+secret:
			w.Header().Set("WWW-Authenticate", `Bearer realm="you sent `+auth+`"`)
			w.WriteHeader(http.StatusUnauthorized)
		case req.Method == "initialize":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":%q,"version":"1"},"capabilities":{"tools":{}}}}`, "echo "+auth)
		case req.Method == "tools/list":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"tools":[{"name":"t","description":%q,"inputSchema":{"type":"object"}}]}}`, req.ID, auth)
		case req.ID == 0:
			w.WriteHeader(http.StatusAccepted)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32601,"message":%q}}`, req.ID, "no such method; you sent "+auth)
		}
	}
}

// TestRedactEveryTool: a configured secret that a probed server put in its
// certificate, its findings or anywhere in what a watch shows never leaves
// through a tool or a resource.
func TestRedactEveryTool(t *testing.T) {
	const secret = "configured-secret-0c5d"
	leaky := func(ctx context.Context, tg probe.Target, o probe.Options) (probe.Report, error) {
		r, err := fakeProbe(ctx, tg, o)
		r.Leaf.Subject = "CN=" + secret
		r.Findings = append(r.Findings, probe.NewFinding(probe.CodeNoSCT, "server says "+secret))
		return r, err
	}
	// The watch fake answers from the target name: put the secret there.
	host := secret + ".example.com"
	fw := newFakeWatch(t)
	h := newHarness(t, Deps{Probe: leaky, Watch: fw, Redact: redact.New(secret)}, "2025-11-25")
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"check_tls", map[string]any{"target": host}},
		{"scan_endpoints", map[string]any{"targets": []string{host}}},
		{"watch_endpoint", map[string]any{"target": host}},
		{"list_watches", nil},
	} {
		res := h.call(call.tool, call.args)
		wire, _ := json.Marshal(res)
		if res.IsError || strings.Contains(string(wire), secret) || !strings.Contains(string(wire), redact.Mask) {
			t.Errorf("%s: %s", call.tool, wire)
		}
	}
	for _, uri := range []string{URIWatches, WatchURI(fw.id(host))} {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = uri
		res, err := h.c.ReadResource(context.Background(), req)
		wire, _ := json.Marshal(res)
		if err != nil || strings.Contains(string(wire), secret) || !strings.Contains(string(wire), redact.Mask) {
			t.Errorf("%s: %v %s", uri, err, wire)
		}
	}
}

// The summary of an endpoint that answers 401 says so, and whether its
// authorization chain holds.
func TestMCPSummaryAuth(t *testing.T) {
	chain := &mcpcheck.AuthChain{}
	auth := &mcpcheck.AuthInfo{Scheme: "Bearer"}
	for _, tc := range []struct {
		name string
		r    mcpcheck.Result
		want string
	}{
		{"consistent", mcpcheck.Result{Status: probe.StatusOK, Auth: auth, AuthChain: chain, HTTPStatus: 401,
			Findings: []probe.Finding{probe.NewFinding(probe.CodeMCPAuthRequired, "401")}}, "requires authorization (HTTP 401), authorization chain consistent"},
		{"broken", mcpcheck.Result{Status: probe.StatusCritical, Auth: auth, AuthChain: chain, HTTPStatus: 401,
			Findings: []probe.Finding{probe.NewFinding(probe.CodeAuthPKCEMissing, "no S256"), probe.NewFinding(probe.CodeAuthServerTLS, "expired")}},
			"auth_pkce_missing (no S256); 1 more finding; requires authorization (HTTP 401), 2 problems in the authorization chain (see auth_chain)"},
		{"not MCP", mcpcheck.Result{Status: probe.StatusCritical, Findings: []probe.Finding{probe.NewFinding(probe.CodeNotMCP, "404")}}, "not answering as an MCP server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mcpSummary(tc.r); !strings.Contains(got, tc.want) {
				t.Errorf("%q lacks %q", got, tc.want)
			}
		})
	}
}
