package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeMCPTokenNeverEchoed runs `tlswatch serve --http` with a named
// MCP token (from the environment), a --token and a client certificate,
// and calls check_mcp_endpoint by token_name against a hostile MCP server
// that reflects the bearer token in its challenge, its error body and its
// serverInfo. The server receives the token; neither the tool result nor
// anything serve logs contains it, the --token or the client key.
func TestServeMCPTokenNeverEchoed(t *testing.T) {
	const mcpToken = "mcp-token-from-env-4c1e9a7b2d"
	const serveToken = "serve-token-8b2f0d5e3a61"
	l := newLab(t)
	t.Setenv("TLSWATCH_TEST_PROD_TOKEN", mcpToken)
	certFile, keyFile, keyB64 := writeClientCert(t, l)

	var seen syncBuffer
	hostile := testlab.ServeTLSHandler(t, &tls.Config{Certificates: []tls.Certificate{l.pki.Leaf(testlab.LeafOpts{IPs: loopbackIP})}},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth := r.Header.Get("Authorization")
			fmt.Fprintln(&seen, auth)
			var req struct {
				ID     int    `json:"id"`
				Method string `json:"method"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			w.Header().Set("Content-Type", "application/json")
			switch req.Method {
			case "initialize":
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":%q,"version":"1"},"capabilities":{"tools":{}}}}`, "srv "+auth)
			case "":
				w.WriteHeader(http.StatusAccepted)
			default:
				w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", auth))
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, `{"error":"bad token %s"}`, auth)
			}
		}))

	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--http", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "w.db"), "--ca-file", l.caFile,
			"--token", serveToken, "--mcp-token", "prod=TLSWATCH_TEST_PROD_TOKEN", "--client-cert", "me=" + certFile + "," + keyFile},
			strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	})
	endpoint := waitServeURL(t, &stderr)

	c, err := client.NewStreamableHttpClient(endpoint, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + serveToken}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "check_mcp_endpoint"
	req.Params.Arguments = map[string]any{"target": "https://" + hostile + "/mcp", "token_name": "prod", "client_cert": "me"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := json.Marshal(res)
	if res.IsError || !strings.Contains(string(wire), `"token_sent":true`) {
		t.Fatalf("result %s", wire)
	}
	if !strings.Contains(seen.String(), "Bearer "+mcpToken) {
		t.Errorf("the MCP server did not get the token: %q", seen.String())
	}
	for name, secret := range map[string]string{"MCP token": mcpToken, "--token": serveToken, "client key": keyB64[:40]} {
		if strings.Contains(string(wire), secret) {
			t.Errorf("the %s is in the tool result: %s", name, wire)
		}
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("the %s is in the log: %s", name, stderr.String())
		}
	}
}

var serveURLRE = regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+/mcp)`)

// waitServeURL waits for serve's "serving MCP" log line and returns its URL.
func waitServeURL(t *testing.T, stderr *syncBuffer) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := serveURLRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve did not start: %s", stderr.String())
	return ""
}

// writeClientCert writes a lab client certificate and its key as PEM files
// and returns their paths and the key's base64 body.
func writeClientCert(t *testing.T, l *lab) (certFile, keyFile, keyB64 string) {
	t.Helper()
	cert := l.pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent"})
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(keyPEM), "\n")
	return certFile, keyFile, strings.Join(lines[1:len(lines)-2], "")
}
