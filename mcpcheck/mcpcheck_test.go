package mcpcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// serveHTTPS serves h over TLS on 127.0.0.1 with a lab certificate for
// testlab.DefaultHost and returns the port.
func serveHTTPS(t *testing.T, pki *testlab.PKI, h http.Handler) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

func labOpts(pki *testlab.PKI) Options {
	return Options{IP: "127.0.0.1", TimeoutMS: 8000, Probe: probe.Options{Now: pki.Now, Roots: pki.Roots()}}
}

func labURL(port int, path string) string {
	return fmt.Sprintf("https://%s:%d%s", testlab.DefaultHost, port, path)
}

func codes(fs []probe.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code+"/"+string(f.Severity))
	}
	return out
}

func finding(r Result, code string) *probe.Finding {
	for i := range r.Findings {
		if r.Findings[i].Code == code {
			return &r.Findings[i]
		}
	}
	return nil
}

func newMCPServer(opts ...server.StreamableHTTPOption) http.Handler {
	s := server.NewMCPServer("lab-mcp", "1.2.3", server.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("echo")), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	})
	s.AddTool(mcp.NewTool("ping2", mcp.WithDescription("ping")), func(ctx context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("pong"), nil
	})
	opts = append([]server.StreamableHTTPOption{server.WithDisableLocalhostProtection(true)}, opts...)
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(s, opts...))
	return mux
}

func TestMCPServerOverHTTPS(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, newMCPServer())
	r, err := Run(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsMCP || r.ServerName != "lab-mcp" || r.ServerVersion != "1.2.3" || r.ProtocolVersion != ProtocolVersion {
		t.Errorf("result %+v", r)
	}
	if r.ToolsListed == nil || *r.ToolsListed != 2 {
		t.Errorf("tools_listed %v (%s)", r.ToolsListed, r.ToolsError)
	}
	if r.Status != probe.StatusOK || r.HTTPStatus != 200 || r.LatencyMS <= 0 || !r.TLS.Trusted {
		t.Errorf("status %s http %d latency %v findings %v", r.Status, r.HTTPStatus, r.LatencyMS, codes(r.Findings))
	}
	if r.Discover == nil || !r.Discover.Offered || len(r.Discover.SupportedVersions) == 0 {
		t.Errorf("discover %+v", r.Discover)
	}
	if finding(r, probe.CodeNotMCP) != nil {
		t.Errorf("not_mcp on a live MCP server: %v", codes(r.Findings))
	}
	b, _ := json.Marshal(r)
	for _, k := range []string{`"is_mcp":true`, `"tools_listed":2`, `"server_name":"lab-mcp"`, `"tls":{`, `"findings":[`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

// A stateless, JSON-response server (no SSE, no session).
func TestMCPServerStatelessJSON(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, newMCPServer(server.WithStateLess(true)))
	r, err := Run(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsMCP || r.ToolsListed == nil || *r.ToolsListed != 2 || r.Status != probe.StatusOK {
		t.Errorf("result %+v findings %v", r, codes(r.Findings))
	}
}

func TestMCPNotFoundHTML(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<!DOCTYPE html><html><head><title>404 Page Not Found</title></head><body>nope</body></html>")
	}))
	r, err := Run(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if err != nil {
		t.Fatal(err)
	}
	f := finding(r, probe.CodeNotMCP)
	if f == nil || f.Severity != probe.SeverityCritical || !strings.Contains(f.Message, "404") || !strings.Contains(f.Message, "404 Page Not Found") {
		t.Fatalf("findings %v", r.Findings)
	}
	if r.IsMCP || r.Status != probe.StatusCritical || r.HTTPStatus != 404 {
		t.Errorf("is_mcp %v status %s http %d", r.IsMCP, r.Status, r.HTTPStatus)
	}
}

func TestMCPJSONNotJSONRPC(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok","version":"3"}`)
	}))
	r, _ := Run(context.Background(), labURL(port, "/api"), labOpts(pki))
	f := finding(r, probe.CodeNotMCP)
	if f == nil || !strings.Contains(f.Message, "not a JSON-RPC") {
		t.Fatalf("findings %v", r.Findings)
	}
}

func TestMCPAuthRequired(t *testing.T) {
	pki := testlab.NewPKI(t)
	var sawAuth atomic.Value
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			sawAuth.Store(r.Header.Get("Authorization"))
		} else if r.Header.Get("Authorization") != "" {
			t.Errorf("the token went along to %s %s", r.Method, r.URL)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcp", error="invalid_token", resource_metadata="https://tlswatch.test/.well-known/oauth-protected-resource"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"unauthorized, you sent `+r.Header.Get("Authorization")+`"}`)
	}))
	opts := labOpts(pki)
	opts.Token = "s3cret-token-value"
	r, err := Run(context.Background(), labURL(port, "/mcp"), opts)
	if err != nil {
		t.Fatal(err)
	}
	f := finding(r, probe.CodeMCPAuthRequired)
	if f == nil || f.Severity != probe.SeverityInfo || !strings.Contains(f.Message, "oauth-protected-resource") {
		t.Fatalf("findings %v", r.Findings)
	}
	// No metadata anywhere: a warning, since OAuth clients cannot sign in.
	if finding(r, probe.CodeNotMCP) != nil || finding(r, probe.CodeAuthMetadataMissing) == nil || r.Status != probe.StatusWarning {
		t.Errorf("status %s findings %v", r.Status, codes(r.Findings))
	}
	if r.Auth == nil || r.Auth.Scheme != "Bearer" || r.Auth.Realm != "mcp" || r.Auth.Error != "invalid_token" ||
		r.Auth.ResourceMetadata != "https://tlswatch.test/.well-known/oauth-protected-resource" {
		t.Errorf("auth %+v", r.Auth)
	}
	if sawAuth.Load() != "Bearer s3cret-token-value" || !r.TokenSent {
		t.Errorf("token not sent: %v", sawAuth.Load())
	}
	b, _ := json.Marshal(r)
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("the token leaked into the result: %s", b)
	}
}

// The token is not sent to a server whose certificate does not verify.
func TestMCPTokenWithheldWhenUntrusted(t *testing.T) {
	pki := testlab.NewPKI(t)
	var sawAuth atomic.Value
	sawAuth.Store("")
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawAuth.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	opts := labOpts(pki)
	opts.Probe.Roots = x509NewPool()
	opts.Token = "s3cret"
	r, err := Run(context.Background(), labURL(port, "/mcp"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sawAuth.Load() != "" || r.TokenSent || r.Status != probe.StatusDown {
		t.Errorf("auth header %q token_sent %v status %s", sawAuth.Load(), r.TokenSent, r.Status)
	}
	if f := finding(r, probe.CodeMCPAuthRequired); f == nil || !strings.Contains(f.Message, "not sent") {
		t.Errorf("findings %v", r.Findings)
	}
}

// An SSE answer that sends a notification before the response.
func TestMCPSSEWithNotificationFirst(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     int    `json:"id"`
			Method string `json:"method"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req)
		if req.Method != "initialize" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")
		io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\",\n")
		io.WriteString(w, "data: \"serverInfo\":{\"name\":\"sse\",\"version\":\"0\"},\"capabilities\":{}}}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // keep the stream open: the client must not wait for its end
	}))
	start := time.Now()
	r, _ := Run(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if !r.IsMCP || r.ServerName != "sse" || r.ProtocolVersion != "2025-06-18" {
		t.Errorf("result %+v findings %v", r, codes(r.Findings))
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("waited for the open stream: %v", time.Since(start))
	}
	if r.ToolsError == "" {
		t.Error("no tools capability not reported")
	}
}

func TestMCPBadInput(t *testing.T) {
	for _, u := range []string{"", "http://example.com/mcp", "ftp://x", "https://exa mple.com/"} {
		_, err := Run(context.Background(), u, Options{})
		var fe *probe.FieldError
		if !errors.As(err, &fe) || fe.Field != "url" {
			t.Errorf("%q: err %v, want a url FieldError", u, err)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	ai := parseChallenge([]string{`Basic realm="x", Bearer resource_metadata="https://a/b", scope="files:read mcp"`})
	if ai == nil || ai.Scheme != "Bearer" || ai.ResourceMetadata != "https://a/b" || ai.Scope != "files:read mcp" {
		t.Errorf("%+v", ai)
	}
	if parseChallenge(nil) != nil {
		t.Error("challenge from nothing")
	}
}

func x509NewPool() *x509.CertPool { return x509.NewCertPool() }

// mTLS: without a client certificate the verdict is client_cert_required,
// not not_mcp; with one, the MCP handshake goes through.
func TestMCPClientCertRequired(t *testing.T) {
	pki := testlab.NewPKI(t)
	srv := httptest.NewUnstartedServer(newMCPServer())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Roots()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	r, err := Run(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if err != nil {
		t.Fatal(err)
	}
	if finding(r, probe.CodeNotMCP) != nil || finding(r, probe.CodeClientCertRequired) == nil || r.Error == "" {
		t.Errorf("without client cert: findings %v error %q", codes(r.Findings), r.Error)
	}

	cc := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent"})
	opts := labOpts(pki)
	opts.Probe.ClientCert = &cc
	r, _ = Run(context.Background(), labURL(port, "/mcp"), opts)
	if !r.IsMCP || r.ServerName != "lab-mcp" {
		t.Errorf("with client cert: %+v findings %v", r, codes(r.Findings))
	}
}

// A 2026-07-28-only server: initialize is gone (JSON-RPC error over HTTP
// 404), server/discover answers. It is MCP.
func TestMCPModernOnlyServer(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     int    `json:"id"`
			Method string `json:"method"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		if req.Method != "server/discover" || r.Header.Get("Mcp-Protocol-Version") != ModernProtocolVersion {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32601,"message":"method removed in protocol version 2026-07-28"}}`, req.ID)
			return
		}
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"modern","version":"9"}}}}`, req.ID)
	}))
	r, _ := Run(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if !r.IsMCP || r.ProtocolVersion != ModernProtocolVersion || r.ServerName != "modern" || r.Status != probe.StatusOK {
		t.Errorf("result %+v findings %v", r, codes(r.Findings))
	}
}

// A server that does not speak 2025-11-25 names what it speaks; the check
// retries once with that version.
func TestMCPVersionRetry(t *testing.T) {
	pki := testlab.NewPKI(t)
	var calls atomic.Int32
	port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     int    `json:"id"`
			Method string `json:"method"`
			Params struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"params"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case req.Method == "initialize" && req.Params.ProtocolVersion != "2025-03-26":
			calls.Add(1)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32602,"message":"Unsupported protocol version","data":{"supported":["2025-03-26"],"requested":"x"}}}`, req.ID)
		case req.Method == "initialize":
			calls.Add(1)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"protocolVersion":"2025-03-26","serverInfo":{"name":"old","version":"1"},"capabilities":{}}}`, req.ID)
		case req.ID == 0:
			w.WriteHeader(http.StatusAccepted)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32601,"message":"nope"}}`, req.ID)
		}
	}))
	r, _ := Run(context.Background(), labURL(port, "/mcp"), labOpts(pki))
	if !r.IsMCP || r.ProtocolVersion != "2025-03-26" || calls.Load() != 2 {
		t.Errorf("result %+v calls %d findings %v", r, calls.Load(), codes(r.Findings))
	}
	if r.Discover == nil || r.Discover.Offered {
		t.Errorf("discover %+v", r.Discover)
	}
}
