package testlab

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// MCPServer is a live MCP server (mcp-go, streamable HTTP at /mcp) behind
// TLS on 127.0.0.1, with a lab leaf for DefaultHost. Its tool list changes
// while it runs (AddTool, DeleteTools of the embedded server), and it can
// stop speaking MCP while TLS goes on: StopMCP makes /mcp answer an HTML
// 404, as a web server does once the MCP process behind it is gone. With
// RequireBearer it is a protected endpoint.
type MCPServer struct {
	*server.MCPServer
	Port int
	// URL is https://DefaultHost:Port/mcp; dial it at 127.0.0.1.
	URL    string
	off    atomic.Bool
	bearer atomic.Pointer[string]
	authz  atomic.Int64
}

// ServeMCP starts an MCP server named name (version "1.0.0") with the
// tools given by name, each echoing "ok", served with p's default leaf.
// It stops on t.Cleanup.
func ServeMCP(t testing.TB, p *PKI, name string, tools ...string) *MCPServer {
	t.Helper()
	m := &MCPServer{MCPServer: server.NewMCPServer(name, "1.0.0", server.WithToolCapabilities(true))}
	for _, tool := range tools {
		m.AddTool(mcp.NewTool(tool, mcp.WithDescription(tool)), EchoTool)
	}
	mcpHandler := server.NewStreamableHTTPServer(m.MCPServer, server.WithDisableLocalhostProtection(true))
	mux := http.NewServeMux()
	mux.Handle("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			m.authz.Add(1)
		}
		if tok := m.bearer.Load(); tok != nil && r.Header.Get("Authorization") != "Bearer "+*tok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lab"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if m.off.Load() {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "<!doctype html><html><head><title>404 Not Found</title></head><body>nothing here</body></html>")
			return
		}
		mcpHandler.ServeHTTP(w, r)
	}))
	addr := ServeTLSHandler(t, &tls.Config{Certificates: []tls.Certificate{p.Leaf(LeafOpts{})}}, mux)
	_, port, _ := net.SplitHostPort(addr)
	m.Port, _ = strconv.Atoi(port)
	m.URL = fmt.Sprintf("https://%s:%d/mcp", DefaultHost, m.Port)
	return m
}

// EchoTool is the handler of ServeMCP's tools.
func EchoTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultText("ok"), nil
}

// StopMCP makes /mcp answer an HTML 404 from now on; TLS still works.
func (m *MCPServer) StopMCP() { m.off.Store(true) }

// StartMCP makes /mcp speak MCP again.
func (m *MCPServer) StartMCP() { m.off.Store(false) }

// RequireBearer makes /mcp answer 401 with a Bearer challenge to every
// request without "Authorization: Bearer tok".
func (m *MCPServer) RequireBearer(tok string) { m.bearer.Store(&tok) }

// AuthorizationsSeen counts the requests that carried an Authorization
// header (a token sent).
func (m *MCPServer) AuthorizationsSeen() int64 { return m.authz.Load() }
