package mcpcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// The bearer token and the operator's other secrets never reach the Result,
// whatever a hostile server echoes and wherever: the challenge, the
// metadata it points to, headers, serverInfo, tool names, error bodies —
// also when an echo straddles the point where a message is clipped.
func TestHostileServerEchoesSecrets(t *testing.T) {
	const token = "tok-9d1f6c0e4b2a7753e1c8f0a9b6d3e2f1-live"
	const other = "other-mcp-token-5e6f7a8b9c0d1e2f3a4b" // configured, sent to this server by an earlier check
	echo := func(r *http.Request) string {
		return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + " " + other
	}
	for _, tc := range []struct {
		name string
		h    func(base string) http.HandlerFunc
	}{
		{"401 with the token in the challenge and the metadata", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					sent := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
					w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error=%q, scope=%q, resource_metadata="%s/.well-known/oauth-protected-resource/mcp?t=%s"`,
						sent, sent, other, base, sent))
					w.WriteHeader(http.StatusUnauthorized)
					io.WriteString(w, "denied: "+echo(r))
					return
				}
				// The metadata fetch carries no token; the server echoes
				// the one it saw before.
				writeJSON(w, map[string]any{"resource": "https://" + token + ".example/mcp", "resource_name": other,
					"authorization_servers": []string{base + "/" + token}, "scopes_supported": []string{token}})
			}
		}},
		{"200 with the token in serverInfo and tool names", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				req := readRPC(r)
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Mcp-Session-Id", token)
				e := echo(r)
				switch req.Method {
				case "initialize":
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":%q,"version":%q},"capabilities":{"tools":{}}}}`, req.ID, "srv "+e, e)
				case "tools/list":
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":{"tools":[{"name":%q,"inputSchema":{"type":"object"}}]}}`, req.ID, e)
				case "":
					w.WriteHeader(http.StatusAccepted)
				default:
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"error":{"code":-32601,"message":%q}}`, req.ID, strings.Repeat("x", 190)+e)
				}
			}
		}},
		{"error bodies, HTML titles and a clipped JSON-RPC error", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				req := readRPC(r)
				if req.Method == "initialize" {
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":%q}}`, strings.Repeat("y", 100)+echo(r))
					return
				}
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, "<html><head><title>%s</title></head></html>", strings.Repeat("z", 70)+echo(r))
			}
		}},
		{"redirect to a URL with the token", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://elsewhere.example/?token="+echo(r), http.StatusFound)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pki := testlab.NewPKI(t)
			var base string
			port := serveHTTPS(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.h(base)(w, r) }))
			base = fmt.Sprintf("https://%s:%d", testlab.DefaultHost, port)
			opts := labOpts(pki)
			opts.Probe.Resolver = labResolver{}
			opts.Token = token
			opts.Redact = redact.New(other)
			r, err := Run(context.Background(), base+"/mcp", opts)
			if err != nil {
				t.Fatal(err)
			}
			if !r.TokenSent {
				t.Fatal("the token was not sent: the test proves nothing")
			}
			b, _ := json.Marshal(r)
			for _, secret := range []string{token, other} {
				if strings.Contains(string(b), secret[:8]) {
					t.Errorf("%s… leaks into the result: %s", secret[:8], b)
				}
			}
			if !strings.Contains(string(b), redact.Mask) {
				t.Errorf("nothing was redacted, so the echo was not exercised: %s", b)
			}
		})
	}
}

// Named secrets never pass through a probe.Report either: the endpoint's
// own Report is part of the Result.
func TestRedactCoversTheReport(t *testing.T) {
	pki := testlab.NewPKI(t)
	port := serveHTTPS(t, pki, newMCPServer())
	opts := labOpts(pki)
	opts.Redact = redact.New("tlswatch.test")
	r, err := Run(context.Background(), labURL(port, "/mcp"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.TLS.Target.Host != redact.Mask || r.TLS.Leaf == nil || strings.Contains(strings.Join(r.TLS.Leaf.SANs, ","), "tlswatch.test") {
		t.Errorf("report not redacted: target %+v", r.TLS.Target)
	}
	if r.IsMCP != true || r.Status != probe.StatusOK {
		t.Errorf("redaction changed the verdict: %s %v", r.Status, codes(r.Findings))
	}
}
