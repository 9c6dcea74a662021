package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/internal/testidp"
	"github.com/tlswatch/tlswatch/internal/testlab"
)

// startIdP serves a test authorization server over HTTPS on loopback with a
// certificate of the lab's PKI (trusted through the lab's --ca-file).
func startIdP(t *testing.T, l *lab, o testidp.Options) *testidp.IdP {
	t.Helper()
	o.TLS = &tls.Config{Certificates: []tls.Certificate{l.pki.Leaf(testlab.LeafOpts{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})}}
	return testidp.Start(t, o)
}

func bearerClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	return httpClient(t, url, legacyVersion, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
}

func toolNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	return names
}

// rawCall posts one tools/call with a bearer token and returns the status
// and the challenge: scopes are decided before any session check.
func rawCall(t *testing.T, url, token, tool string) (int, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// serve --auth-issuer: the metadata document, the 401 challenge, every
// kind of bad token refused, read and read+write tokens with their scopes,
// introspected opaque tokens, and the metrics endpoint behind the same
// check, all through the built binary.
func TestOAuthHTTP(t *testing.T) {
	l := newLab(t)
	idp := startIdP(t, l, testidp.Options{Path: "/realms/ops", IntrospectID: "tlswatch-rs", IntrospectSecret: "introspect-s3cret"})
	url := httpServer(t, l.serveArgs("--auth-issuer", idp.Issuer, "--auth-introspect", idp.Issuer+"/introspect"),
		"TLSWATCH_INTROSPECT_CLIENT_ID=tlswatch-rs", "TLSWATCH_INTROSPECT_CLIENT_SECRET=introspect-s3cret")
	base := strings.TrimSuffix(url, "/mcp")
	metadataURL := base + "/.well-known/oauth-protected-resource/mcp"

	t.Run("metadata", func(t *testing.T) {
		for _, u := range []string{metadataURL, base + "/.well-known/oauth-protected-resource"} {
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			var md struct {
				Resource      string   `json:"resource"`
				AuthServers   []string `json:"authorization_servers"`
				Scopes        []string `json:"scopes_supported"`
				BearerMethods []string `json:"bearer_methods_supported"`
			}
			err = json.NewDecoder(resp.Body).Decode(&md)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
			}
			if md.Resource != url || !slices.Equal(md.AuthServers, []string{idp.Issuer}) ||
				!slices.Equal(md.Scopes, []string{"tlswatch:read", "tlswatch:write"}) || !slices.Equal(md.BearerMethods, []string{"header"}) {
				t.Errorf("GET %s: %+v", u, md)
			}
		}
	})

	t.Run("challenge", func(t *testing.T) {
		resp := post(t, url, nil)
		want := `Bearer scope="tlswatch:read", resource_metadata="` + metadataURL + `"`
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
			t.Errorf("no token: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
	})

	t.Run("bad tokens", func(t *testing.T) {
		now := time.Now()
		claims := func(k string, v any) map[string]any {
			c := idp.Claims("alice", url, "tlswatch:read")
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
			return c
		}
		good := idp.Token("alice", url, "tlswatch:read")
		other := strings.Split(idp.Token("mallory", url, "tlswatch:write"), ".")
		p := strings.Split(good, ".")
		for name, tok := range map[string]string{
			"wrong audience":  idp.Sign(claims("aud", "https://other.example.com/mcp"), testidp.SignOptions{}),
			"expired":         idp.Sign(claims("exp", now.Add(-time.Hour).Unix()), testidp.SignOptions{}),
			"not yet valid":   idp.Sign(claims("nbf", now.Add(time.Hour).Unix()), testidp.SignOptions{}),
			"bad signature":   p[0] + "." + other[1] + "." + p[2],
			"unknown kid":     idp.Sign(claims("sub", "alice"), testidp.SignOptions{Unpublished: true}),
			"wrong issuer":    idp.Sign(claims("iss", "https://evil.example.com"), testidp.SignOptions{}),
			"alg none":        testidp.Unsigned(claims("sub", "alice")),
			"inactive opaque": "opaque-never-issued",
		} {
			resp := post(t, url, map[string]string{"Authorization": "Bearer " + tok})
			ch := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != 401 || !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, `resource_metadata="`+metadataURL+`"`) {
				t.Errorf("%s: %d %q, want 401 invalid_token", name, resp.StatusCode, ch)
			}
		}
		if resp := post(t, url, map[string]string{"Authorization": "Bearer " + good}); resp.StatusCode != 200 {
			t.Errorf("the good token: %d", resp.StatusCode)
		}
	})

	t.Run("read token", func(t *testing.T) {
		read := idp.Token("reader", url, "tlswatch:read")
		c := bearerClient(t, url, read)
		if res := call(t, c, "list_watches", map[string]any{}); res.IsError {
			t.Errorf("list_watches: %s", text(res))
		}
		if res := call(t, c, "check_tls", map[string]any{"target": l.valid, "ip": l.validIP}); res.IsError {
			t.Errorf("check_tls: %s", text(res))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = "watch_endpoint", map[string]any{"target": l.valid, "ip": l.validIP}
		if res, err := c.CallTool(ctx, req); err == nil {
			t.Errorf("watch_endpoint with a read token: %v", res)
		}
		status, ch := rawCall(t, url, read, "watch_endpoint")
		want := `Bearer error="insufficient_scope", scope="tlswatch:read tlswatch:write", resource_metadata="` + metadataURL + `"`
		if status != 403 || ch != want {
			t.Errorf("watch_endpoint with a read token: %d %q, want 403 %q", status, ch, want)
		}
	})

	t.Run("read+write token", func(t *testing.T) {
		c := bearerClient(t, url, idp.Token("writer", url, "tlswatch:read", "tlswatch:write"))
		res := call(t, c, "watch_endpoint", map[string]any{"target": l.valid, "ip": l.validIP})
		if res.IsError {
			t.Fatalf("watch_endpoint: %s", text(res))
		}
		w := structured(t, res)
		if res := call(t, c, "unwatch_endpoint", map[string]any{"id": w["id"]}); res.IsError {
			t.Errorf("unwatch_endpoint: %s", text(res))
		}
	})

	t.Run("introspected opaque token", func(t *testing.T) {
		tok := idp.Opaque(idp.Claims("ops-bot", url, "tlswatch:read"))
		c := bearerClient(t, url, tok)
		if res := call(t, c, "list_expiring", map[string]any{}); res.IsError {
			t.Errorf("list_expiring: %s", text(res))
		}
		if status, _ := rawCall(t, url, tok, "unwatch_endpoint"); status != 403 {
			t.Errorf("unwatch_endpoint with an introspected read token: %d, want 403", status)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for tok, want := range map[string]int{"": 401, idp.Token("prometheus", url, "tlswatch:read"): 200} {
			req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("/metrics: %d, want %d", resp.StatusCode, want)
			}
		}
	})
}

// serve --read-only lists and runs only read tools, over HTTP with OAuth
// (even for a read+write token) and over stdio.
func TestReadOnly(t *testing.T) {
	l := newLab(t)
	idp := startIdP(t, l, testidp.Options{})
	url := httpServer(t, l.serveArgs("--read-only", "--auth-issuer", idp.Issuer))
	clients := map[string]*client.Client{
		"http":  bearerClient(t, url, idp.Token("writer", url, "tlswatch:read", "tlswatch:write")),
		"stdio": stdioClient(t, "", l.serveArgs("--read-only")),
	}
	for name, c := range clients {
		names := toolNames(t, c)
		if slices.Contains(names, "watch_endpoint") || slices.Contains(names, "unwatch_endpoint") || !slices.Contains(names, "list_watches") {
			t.Errorf("%s: read-only server lists %v", name, names)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = "watch_endpoint", map[string]any{"target": l.valid, "ip": l.validIP}
		res, err := c.CallTool(ctx, req)
		cancel()
		if err == nil && !res.IsError {
			t.Errorf("%s: watch_endpoint ran on a read-only server", name)
		}
	}
}
