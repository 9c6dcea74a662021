package main

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/auth"
	"github.com/tlswatch/tlswatch/internal/testlab"
)

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		"8931":           "127.0.0.1:8931",
		":8931":          "127.0.0.1:8931",
		"127.0.0.1:8931": "127.0.0.1:8931",
		"[::1]:0":        "[::1]:0",
		"0.0.0.0:8931":   "0.0.0.0:8931",
	} {
		got, err := listenAddr("--http", in)
		if err != nil || got != want {
			t.Errorf("listenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := listenAddr("--http", ""); err == nil || !strings.HasPrefix(err.Error(), "--http") {
		t.Errorf("empty address: %v", err)
	}
}

func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	cases := []struct {
		token, origin, auth, host string
		body                      int64
		want                      int
	}{
		{"", "", "", "127.0.0.1:1", 0, http.StatusTeapot},
		{"", "https://evil.example", "", "127.0.0.1:1", 0, http.StatusForbidden},
		{"", "null", "", "127.0.0.1:1", 0, http.StatusForbidden},
		{"", "file://", "", "127.0.0.1:1", 0, http.StatusForbidden},
		{"", "http://localhost:5173", "", "127.0.0.1:1", 0, http.StatusTeapot},
		{"", "http://[::1]:5173", "", "127.0.0.1:1", 0, http.StatusTeapot},
		{"", "https://tlswatch.example.org", "", "tlswatch.example.org", 0, http.StatusTeapot}, // same origin
		{"s3cr3t-XYZ", "", "", "127.0.0.1:1", 0, http.StatusUnauthorized},
		{"s3cr3t-XYZ", "", "Bearer nope", "127.0.0.1:1", 0, http.StatusUnauthorized},
		{"s3cr3t-XYZ", "", "Basic dG9r", "127.0.0.1:1", 0, http.StatusUnauthorized},
		{"s3cr3t-XYZ", "", "Bearer s3cr3t-XYZ", "127.0.0.1:1", 0, http.StatusTeapot},
		{"s3cr3t-XYZ", "", "bearer s3cr3t-XYZ", "127.0.0.1:1", 0, http.StatusTeapot},
		{"s3cr3t-XYZ", "https://evil.example", "Bearer s3cr3t-XYZ", "127.0.0.1:1", 0, http.StatusForbidden},
		{"", "", "", "127.0.0.1:1", maxBodyBytes + 1, http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "http://"+c.host+"/mcp", strings.NewReader("{}"))
		r.Host = c.host
		r.ContentLength = c.body
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		var authn auth.Authenticator = auth.Open{}
		if c.token != "" {
			authn = auth.NewStaticToken(c.token)
		}
		guard(authn, maxBodyBytes, ok).ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("token=%q origin=%q auth=%q: %d, want %d", c.token, c.origin, c.auth, w.Code, c.want)
		}
		if w.Code == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer realm="tlswatch"`) {
			t.Errorf("401 without a Bearer challenge: %q", w.Header().Get("WWW-Authenticate"))
		}
		if strings.Contains(w.Body.String(), "s3cr3t-XYZ") && c.token != "" {
			t.Errorf("response echoes the token: %q", w.Body.String())
		}
	}
}

func TestLoadRoots(t *testing.T) {
	p := testlab.NewPKI(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "root.pem")
	os.WriteFile(good, []byte(p.Root.PEM()), 0o600)
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("hello"), 0o600)

	pool, err := loadRoots([]string{good})
	if err != nil || pool == nil {
		t.Fatalf("loadRoots: %v", err)
	}
	if _, err := p.Intermediate.Cert.Verify(x509Opts(pool)); err != nil {
		t.Errorf("the --ca-file root is not trusted: %v", err)
	}
	for _, f := range []string{junk, filepath.Join(dir, "missing.pem"), dir} {
		if _, err := loadRoots([]string{f}); err == nil || !strings.HasPrefix(err.Error(), "--ca-file "+f) {
			t.Errorf("loadRoots(%s): %v", f, err)
		}
	}
	if pool, err := loadRoots(nil); err != nil || pool == nil {
		t.Errorf("no files: %v %v", pool, err)
	}
}

func x509Opts(pool *x509.CertPool) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: pool}
}

func TestRateLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newRateLimiter(10, 3)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Errorf("over the burst: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Error("another client was limited")
	}
	now = now.Add(100 * time.Millisecond)
	if ok, _ := l.allow("a"); !ok {
		t.Error("no token after refill")
	}
}

// OAuth settings that can only be judged once the listener exists fail
// serve with the flag named.
func TestServeAuthErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--http", "0.0.0.0:0", "--auth-issuer", "https://idp.example.com"}, "--public-url: required when --http binds every interface"},
		{[]string{"--http", "127.0.0.1:0", "--auth-issuer", "http://idp.example.com"}, "--auth-issuer http://idp.example.com: plain http is allowed for loopback addresses only"},
		{[]string{"--http", "127.0.0.1:0", "--auth-issuer", "https://idp.example.com", "--public-url", "tlswatch.example.com"}, "--public-url tlswatch.example.com: want an absolute"},
	} {
		r := runCLI(t, "", append([]string{"serve", "--db", db}, c.args...)...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != exitUnknown || !strings.Contains(lines[len(lines)-1], c.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want exit 3 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

func TestTokenEnvWithIssuer(t *testing.T) {
	t.Setenv("TLSWATCH_TOKEN", "env-token")
	r := runCLI(t, "", "serve", "--db", filepath.Join(t.TempDir(), "t.db"), "--http", "127.0.0.1:0", "--auth-issuer", "https://idp.example.com")
	wantBadInput(t, r, "--auth-issuer: cannot be combined with --token (or TLSWATCH_TOKEN)")
}
