package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// TestHTTPBeyondLoopbackWarns: bound beyond loopback without a token, serve
// says so loudly on stderr.
func TestHTTPBeyondLoopbackWarns(t *testing.T) {
	l := newLab(t)
	cmd := exec.Command(binary, append(l.serveArgs(), "--http", "0.0.0.0:0")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "WARNING") && strings.Contains(sc.Text(), "WITHOUT a token") {
				found <- true
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-found:
	case <-time.After(15 * time.Second):
		t.Fatal("no warning about listening beyond loopback without a token")
	}
}

// TestCheckMCPEndpoint: check_mcp_endpoint on a lab TLS server that speaks
// MCP (an mcp-go server) and on one that does not.
func TestCheckMCPEndpoint(t *testing.T) {
	l := newLab(t)
	remote := server.NewMCPServer("lab-remote", "1.2.3")
	remote.AddTool(mustTool("ping"), nil)
	cfg := &tls.Config{Certificates: []tls.Certificate{l.pki.Leaf(testlab.LeafOpts{})}}
	mcpAddr := testlab.ServeTLSHandler(t, cfg, server.NewStreamableHTTPServer(remote, server.WithDisableLocalhostProtection(true)))

	c := stdioClient(t, "", l.serveArgs())
	res := call(t, c, "check_mcp_endpoint", map[string]any{"target": "https://" + hostTarget(mcpAddr) + "/mcp", "ip": "127.0.0.1"})
	if res.IsError {
		t.Fatalf("check_mcp_endpoint: %s", text(res))
	}
	m := structured(t, res)
	if m["is_mcp"] != true || m["server_name"] != "lab-remote" {
		t.Errorf("check_mcp_endpoint on an MCP server: %s", text(res))
	}

	res = call(t, c, "check_mcp_endpoint", map[string]any{"target": "https://" + l.valid + "/mcp", "ip": "127.0.0.1"})
	if res.IsError {
		t.Fatalf("check_mcp_endpoint: %s", text(res))
	}
	if m := structured(t, res); m["is_mcp"] != false {
		t.Errorf("check_mcp_endpoint on a plain HTTPS server: %s", text(res))
	}
}

func mustTool(name string) mcp.Tool {
	return mcp.NewTool(name, mcp.WithDescription("lab tool"))
}

// TestScanProgressHTTP: scan_endpoints over HTTP answers one Report per
// target and streams progress notifications for a progressToken.
func TestScanProgressHTTP(t *testing.T) {
	l := newLab(t)
	url := httpServer(t, l.serveArgs())
	c := httpClient(t, url, legacyVersion)
	ch := collect(c)
	req := mcp.CallToolRequest{}
	req.Params.Name = "scan_endpoints"
	req.Params.Arguments = map[string]any{"targets": []any{
		map[string]any{"target": l.valid, "ip": "127.0.0.1"},
		map[string]any{"target": hostTarget(l.rotating.Addr), "ip": "127.0.0.1"},
	}}
	req.Params.Meta = &mcp.Meta{ProgressToken: "scan-e2e"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError {
		t.Fatalf("scan_endpoints: %v %s", err, text(res))
	}
	validateOutput(t, c, "scan_endpoints", res)
	m := structured(t, res)
	if reps, _ := m["reports"].([]any); len(reps) != 2 {
		t.Errorf("reports: %d, want 2", len(reps))
	}
	n := ch.wait(t, "notifications/progress", "", 5*time.Second)
	if n.Params.AdditionalFields["progressToken"] != "scan-e2e" {
		t.Errorf("progress: %v", n.Params.AdditionalFields)
	}
}

// TestHTTPShutdownWithOpenStreams: SIGINT ends serve --http promptly and
// cleanly even while a 2025-11-25 GET stream and a 2026-07-28 listen stream
// are open.
func TestHTTPShutdownWithOpenStreams(t *testing.T) {
	l := newLab(t)
	url, stopServer := startHTTPServer(t, l.serveArgs())
	legacy := httpClient(t, url, legacyVersion, transport.WithContinuousListening())
	subscribe(t, legacy, "tlswatch://expiring")
	modern := httpClient(t, url, modernVersion)
	ch := collect(modern)
	stop, err := modern.ListenAsync(context.Background(), mcp.SubscriptionFilter{ResourceSubscriptions: []string{"tlswatch://expiring"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ch.wait(t, "notifications/subscriptions/acknowledged", "", 10*time.Second)
	start := time.Now()
	stopServer()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown with open streams took %s", d)
	}
}
