package auth

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testidp"
)

// guarded is the order serve's guard runs an Authenticator in: headers,
// body cap, then Authorize; the inner handler echoes the body it got.
func guarded(a Authenticator, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r = a.Authenticate(w, r); r == nil {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		if !a.Authorize(w, r) {
			return
		}
		p, _ := PrincipalFrom(r.Context())
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Subject", p.Subject)
		w.Write(b)
	})
}

const wantMetadataURL = "https://tlswatch.example.com/.well-known/oauth-protected-resource/mcp"

func TestResourceServerHTTP(t *testing.T) {
	r := newRig(t, testidp.Options{}, nil)
	h := guarded(r.rs, 1<<10)
	read := r.idp.Token("reader", testResource, ScopeRead)
	write := r.idp.Token("writer", testResource, ScopeRead, ScopeWrite)
	writeOnly := r.idp.Token("w", testResource, ScopeWrite)
	none := r.idp.Token("nobody", testResource)
	wrongAud := r.idp.Token("reader", "https://other.example.com/mcp", ScopeRead)
	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}
	cases := []struct {
		name, method, token, body string
		want                      int
		challenge                 string
	}{
		{"no token", "POST", "", call("list_watches"), 401,
			`Bearer scope="tlswatch:read", resource_metadata="` + wantMetadataURL + `"`},
		{"wrong audience", "POST", wrongAud, call("list_watches"), 401,
			`Bearer error="invalid_token", error_description="the token was not issued for this resource (aud)", scope="tlswatch:read", resource_metadata="` + wantMetadataURL + `"`},
		{"garbage token", "POST", "Zm9v", call("list_watches"), 401, `error="invalid_token"`},
		{"read token, read tool", "POST", read, call("list_watches"), 200, ""},
		{"read token, initialize", "POST", read, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, 200, ""},
		{"read token, GET stream", "GET", read, "", 200, ""},
		{"read token, write tool", "POST", read, call("watch_endpoint"), 403,
			`Bearer error="insufficient_scope", scope="tlswatch:read tlswatch:write", resource_metadata="` + wantMetadataURL + `"`},
		{"read token, unknown tool", "POST", read, call("drop_tables"), 403, `error="insufficient_scope"`},
		{"read token, write tool in a batch", "POST", read, "[" + call("list_watches") + "," + call("watch_endpoint") + "]", 403, `error="insufficient_scope"`},
		{"read+write token, write tool", "POST", write, call("watch_endpoint"), 200, ""},
		{"write implies read", "POST", writeOnly, call("check_tls"), 200, ""},
		{"no tlswatch scope", "POST", none, call("list_watches"), 403,
			`Bearer error="insufficient_scope", scope="tlswatch:read", resource_metadata="` + wantMetadataURL + `"`},
		{"body over the cap", "POST", write, `{"x":"` + strings.Repeat("a", 2<<10) + `"}`, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "http://127.0.0.1/mcp", strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d: %s", w.Code, c.want, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, c.challenge) || (c.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want %q", got, c.challenge)
			}
			if c.want == 200 && w.Body.String() != c.body {
				t.Errorf("the handler got body %q, want %q", w.Body, c.body)
			}
			if c.token != "" && (strings.Contains(w.Body.String(), c.token) && c.want != 200 || strings.Contains(w.Header().Get("WWW-Authenticate"), c.token)) {
				t.Error("the response echoes the token")
			}
		})
	}
}

func TestMetadataDocument(t *testing.T) {
	r := newRig(t, testidp.Options{Path: "/tenant"}, func(c *Config) { c.Resource = "https://tlswatch.example.com/ops/mcp" })
	want := map[string]any{
		"resource":                 "https://tlswatch.example.com/ops/mcp",
		"authorization_servers":    []any{r.idp.Issuer},
		"scopes_supported":         []any{ScopeRead, ScopeWrite},
		"bearer_methods_supported": []any{"header"},
		"resource_name":            "tlswatch",
	}
	if got := r.rs.MetadataURL(); got != "https://tlswatch.example.com/.well-known/oauth-protected-resource/ops/mcp" {
		t.Errorf("MetadataURL %s", got)
	}
	paths := r.rs.MetadataPaths()
	for _, p := range []string{"/.well-known/oauth-protected-resource/ops/mcp", "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		if !slices.Contains(paths, p) {
			t.Errorf("MetadataPaths %v lack %s", paths, p)
		}
		t.Run(p, func(t *testing.T) {
			w := httptest.NewRecorder()
			r.rs.MetadataHandler().ServeHTTP(w, httptest.NewRequest("GET", p, nil))
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != 200 {
				t.Fatalf("%d %v: %s", w.Code, err, w.Body)
			}
			for k, v := range want {
				if gv, _ := json.Marshal(got[k]); string(gv) != mustJSON(v) {
					t.Errorf("%s = %s, want %s", k, gv, mustJSON(v))
				}
			}
			if w.Header().Get("Access-Control-Allow-Origin") != "*" {
				t.Error("no CORS header: browser clients cannot discover the metadata")
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestStaticToken(t *testing.T) {
	h := guarded(NewStaticToken("s3cr3t-XYZ"), 1<<10)
	for _, c := range []struct {
		auth, challenge string
		want            int
	}{
		{"", `Bearer realm="tlswatch"`, 401},
		{"Bearer nope", `Bearer realm="tlswatch", error="invalid_token"`, 401},
		{"Basic czNjcjN0LVhZWg==", `Bearer realm="tlswatch"`, 401},
		{"Bearer s3cr3t-XYZ", "", 200},
		{"bearer s3cr3t-XYZ", "", 200},
	} {
		req := httptest.NewRequest("POST", "http://127.0.0.1/mcp", strings.NewReader("{}"))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.want || w.Header().Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%q: %d %q, want %d %q", c.auth, w.Code, w.Header().Get("WWW-Authenticate"), c.want, c.challenge)
		}
		if strings.Contains(w.Body.String()+w.Header().Get("WWW-Authenticate"), "resource_metadata") {
			t.Errorf("%q: a static token names resource_metadata", c.auth)
		}
	}
}

func TestNeededScope(t *testing.T) {
	scopes := map[string]string{"list_watches": ScopeRead}
	for _, c := range []struct{ body, want string }{
		{`{"method":"tools/call","params":{"name":"list_watches"}}`, ScopeRead},
		{`{"method":"tools/call","params":{"name":"watch_endpoint"}}`, ScopeWrite},
		{`{"method":"tools/call","params":{"name":"unknown"}}`, ScopeWrite},
		{`{"method":"tools/list"}`, ScopeRead},
		{`{"method":"resources/read","params":{"name":"watch_endpoint"}}`, ScopeRead},
		{`[{"method":"ping"},{"method":"tools/call","params":{"name":"watch_endpoint"}}]`, ScopeWrite},
		{`[{"method":"ping"},{"method":"tools/call","params":{"name":"list_watches"}}]`, ScopeRead},
		// Spellings a struct decoder matches case-insensitively.
		{`{"method":"tools/call","params":{"name":"list_watches","NAME":"watch_endpoint"}}`, ScopeWrite},
		{`{"method":"tools/call","params":{"NAME":"watch_endpoint","name":"list_watches"}}`, ScopeWrite},
		{`{"METHOD":"tools/call","Params":{"Name":"watch_endpoint"}}`, ScopeWrite},
		{`{"method":"tools/call","params":{"name":"list_watches"},"PARAMS":{"name":"watch_endpoint"}}`, ScopeWrite},
		{`{"method":"tools/call","params":{"name":"list_watches","na\u006de":"watch_endpoint"}}`, ScopeWrite},
		{`not json`, ScopeRead},
		{``, ScopeRead},
	} {
		if got := neededScope([]byte(c.body), scopes); got != c.want {
			t.Errorf("neededScope(%s) = %s, want %s", c.body, got, c.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	base := Config{Resource: testResource, Issuers: []string{"https://idp.example.com"}}
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Issuers = nil }, "--auth-issuer: at least one"},
		{func(c *Config) { c.Issuers = []string{"http://idp.example.com"} }, "--auth-issuer http://idp.example.com: plain http is allowed for loopback addresses only"},
		{func(c *Config) { c.Issuers = []string{"idp.example.com"} }, "--auth-issuer idp.example.com:"},
		{func(c *Config) { c.Issuers = []string{"https://idp.example.com?x=1"} }, "--auth-issuer https://idp.example.com?x=1:"},
		{func(c *Config) { c.Resource = "tlswatch.example.com/mcp" }, "--public-url: want an absolute"},
		{func(c *Config) { c.Resource = "https://tlswatch.example.com/mcp#x" }, "--public-url: must not carry"},
		{func(c *Config) { c.IntrospectURL = "https://idp.example.com/introspect" }, "--auth-introspect: client credentials required"},
		{func(c *Config) {
			c.IntrospectURL, c.IntrospectClientID, c.IntrospectClientSecret = "http://10.0.0.1/introspect", "a", "b"
		}, "--auth-introspect http://10.0.0.1/introspect: plain http"},
	} {
		cfg := base
		c.edit(&cfg)
		if _, err := New(cfg); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want %q", cfg, err, c.want)
		}
	}
	for _, ok := range []string{"http://127.0.0.1:9000/realms/x", "http://localhost:8080", "http://[::1]:8080"} {
		cfg := base
		cfg.Issuers = []string{ok}
		rs, err := New(cfg)
		if err != nil {
			t.Errorf("loopback issuer %s: %v", ok, err)
			continue
		}
		rs.Close()
	}
}

func TestCanonicalResource(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, c := range []struct {
		public string
		addr   net.Addr
		want   string
	}{
		{"", tcp("127.0.0.1:8931"), "http://127.0.0.1:8931/mcp"},
		{"", tcp("[::1]:8931"), "http://[::1]:8931/mcp"},
		{"https://TLSWatch.Example.com", tcp("0.0.0.0:8931"), "https://tlswatch.example.com/mcp"},
		{"https://tlswatch.example.com/ops/mcp", tcp("127.0.0.1:8931"), "https://tlswatch.example.com/ops/mcp"},
		{"", tcp("0.0.0.0:8931"), "error: --public-url: required when --http binds every interface"},
		{"ftp://x/mcp", tcp("127.0.0.1:1"), "error: --public-url ftp://x/mcp:"},
	} {
		got, err := CanonicalResource(c.public, c.addr, "/mcp")
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("CanonicalResource(%q, %v) = %q, want %q", c.public, c.addr, got, c.want)
		}
	}
}

func TestDiscoveryURLs(t *testing.T) {
	for iss, want := range map[string][]string{
		"https://idp.example.com": {
			"https://idp.example.com/.well-known/oauth-authorization-server",
			"https://idp.example.com/.well-known/openid-configuration",
		},
		"https://idp.example.com/realms/ops/": {
			"https://idp.example.com/.well-known/oauth-authorization-server/realms/ops",
			"https://idp.example.com/.well-known/openid-configuration/realms/ops",
			"https://idp.example.com/realms/ops/.well-known/openid-configuration",
		},
	} {
		if got := discoveryURLs(iss); !slices.Equal(got, want) {
			t.Errorf("discoveryURLs(%s) = %v, want %v", iss, got, want)
		}
	}
}
