package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tlswatch/tlswatch/internal/testidp"
	"github.com/tlswatch/tlswatch/internal/testlab"
)

func TestVerifyJWT(t *testing.T) {
	r := newRig(t, testidp.Options{Path: "/tenant"}, nil)
	idp, now := r.idp, r.clk.Now()
	claims := func(edit func(map[string]any)) map[string]any {
		c := idp.Claims("alice", testResource, ScopeRead)
		if edit != nil {
			edit(c)
		}
		return c
	}
	sign := func(edit func(map[string]any), o testidp.SignOptions) string { return idp.Sign(claims(edit), o) }
	valid := sign(nil, testidp.SignOptions{})
	other := sign(func(c map[string]any) { c["sub"] = "mallory"; c["scope"] = ScopeWrite }, testidp.SignOptions{})
	parts, otherParts := strings.Split(valid, "."), strings.Split(other, ".")
	swapped := parts[0] + "." + otherParts[1] + "." + parts[2] // mallory's claims under alice's signature

	cases := []struct {
		name   string
		token  string
		want   error
		scopes []string
	}{
		{"ES256 at+jwt", valid, nil, []string{ScopeRead}},
		{"RS256", sign(nil, testidp.SignOptions{Alg: jose.RS256}), nil, []string{ScopeRead}},
		{"PS256", sign(nil, testidp.SignOptions{Alg: jose.PS256}), nil, []string{ScopeRead}},
		{"typ JWT", sign(nil, testidp.SignOptions{Typ: "JWT"}), nil, []string{ScopeRead}},
		{"no typ", sign(nil, testidp.SignOptions{Typ: "-"}), nil, []string{ScopeRead}},
		{"typ of another token kind", sign(nil, testidp.SignOptions{Typ: "dpop+jwt"}), errType, nil},
		{"scp array", sign(func(c map[string]any) { delete(c, "scope"); c["scp"] = []string{ScopeRead, ScopeWrite} }, testidp.SignOptions{}), nil, []string{ScopeRead, ScopeWrite}},
		{"aud array", sign(func(c map[string]any) { c["aud"] = []string{"other", testResource} }, testidp.SignOptions{}), nil, []string{ScopeRead}},
		{"aud with a trailing slash", sign(func(c map[string]any) { c["aud"] = testResource + "/" }, testidp.SignOptions{}), nil, []string{ScopeRead}},
		{"issuer with a trailing slash", sign(func(c map[string]any) { c["iss"] = idp.Issuer + "/" }, testidp.SignOptions{}), nil, []string{ScopeRead}},
		{"expired within the skew", sign(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() }, testidp.SignOptions{}), nil, []string{ScopeRead}},
		{"wrong audience", sign(func(c map[string]any) { c["aud"] = "https://other.example.com/mcp" }, testidp.SignOptions{}), errAudience, nil},
		{"audience of a sub-path", sign(func(c map[string]any) { c["aud"] = testResource + "/x" }, testidp.SignOptions{}), errAudience, nil},
		{"no audience", sign(func(c map[string]any) { delete(c, "aud") }, testidp.SignOptions{}), errAudience, nil},
		{"expired", sign(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }, testidp.SignOptions{}), errExpired, nil},
		{"no exp", sign(func(c map[string]any) { delete(c, "exp") }, testidp.SignOptions{}), errNoExpiry, nil},
		{"not yet valid", sign(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }, testidp.SignOptions{}), errNotYetValid, nil},
		{"issued in the future", sign(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }, testidp.SignOptions{}), errIssuedFuture, nil},
		{"wrong issuer", sign(func(c map[string]any) { c["iss"] = "https://evil.example.com" }, testidp.SignOptions{}), errIssuer, nil},
		{"no issuer", sign(func(c map[string]any) { delete(c, "iss") }, testidp.SignOptions{}), errIssuer, nil},
		{"no subject", sign(func(c map[string]any) { delete(c, "sub"); delete(c, "client_id") }, testidp.SignOptions{}), errNoSubject, nil},
		{"bad signature", swapped, errBadSignature, nil},
		{"unknown kid", sign(nil, testidp.SignOptions{Unpublished: true}), errUnknownKey, nil},
		{"alg none", testidp.Unsigned(claims(nil)), errAlgorithm, nil},
		{"HS256 keyed with the public key", sign(nil, testidp.SignOptions{Alg: jose.HS256}), errAlgorithm, nil},
		{"not a JWT, no introspection", "opaque-token-value", errNotAJWT, nil},
		{"three garbage segments", "a.b.c", errNotAJWT, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := r.rs.Verify(context.Background(), c.token)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
			if c.want != nil {
				return
			}
			if p.Subject != "alice" || p.ClientID != "alice" || !sameIssuer(p.Issuer, idp.Issuer) {
				t.Errorf("principal %+v", p)
			}
			if !slices.Equal(p.Scopes, c.scopes) {
				t.Errorf("scopes %v, want %v", p.Scopes, c.scopes)
			}
		})
	}
	// Every case above needed one discovery and one JWKS fetch: the
	// unknown kid's refresh was within MinRefresh of the first fetch.
	if m, k := idp.Hits("metadata"), idp.Hits("jwks"); m != 1 || k != 1 {
		t.Errorf("issuer hit %d times for metadata and %d for keys, want 1 and 1", m, k)
	}
}

// A key the issuer starts signing with is picked up on its first token; a
// stream of unknown key ids fetches at most once per MinRefresh; a key the
// issuer withdraws stops verifying once the cached set is KeyTTL old.
func TestKeyRotation(t *testing.T) {
	r := newRig(t, testidp.Options{}, nil)
	ctx := context.Background()
	verify := func(tok string) error { _, err := r.rs.Verify(ctx, tok); return err }
	long := r.idp.Claims("alice", testResource, ScopeRead)
	long["exp"] = r.clk.Now().Add(3 * time.Hour).Unix()
	old := r.idp.Sign(long, testidp.SignOptions{})
	if err := verify(old); err != nil {
		t.Fatalf("first token: %v", err)
	}

	r.idp.Rotate()
	r.clk.Add(defaultMinRefresh + time.Second)
	if err := verify(r.idp.Token("alice", testResource, ScopeRead)); err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	if n := r.idp.Hits("jwks"); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (once more for the new kid)", n)
	}

	r.clk.Add(defaultMinRefresh)
	for i := 0; i < 5; i++ {
		if err := verify(r.idp.Sign(r.idp.Claims("x", testResource, ScopeRead), testidp.SignOptions{Unpublished: true})); !errors.Is(err, errUnknownKey) {
			t.Fatalf("unknown kid %d: %v", i, err)
		}
	}
	if n := r.idp.Hits("jwks"); n != 3 {
		t.Errorf("JWKS fetched %d times after 5 unknown kids, want 3 (one refresh per MinRefresh)", n)
	}

	r.idp.Retire()
	if err := verify(old); err != nil {
		t.Errorf("withdrawn key within KeyTTL (still cached): %v", err)
	}
	r.clk.Add(defaultKeyTTL)
	if err := verify(old); !errors.Is(err, errUnknownKey) {
		t.Errorf("withdrawn key after KeyTTL: %v, want errUnknownKey", err)
	}
	if err := verify(r.idp.Token("alice", testResource, ScopeRead)); err != nil {
		t.Errorf("current key after KeyTTL: %v", err)
	}
	if n := r.idp.Hits("jwks"); n != 4 {
		t.Errorf("JWKS fetched %d times, want 4 (once more after KeyTTL)", n)
	}
}

func TestRotationWithoutWaiting(t *testing.T) {
	// The first verification of a new kid is never rate-limited when the
	// last fetch is older than MinRefresh, but a rotation within it is
	// caught on the next token after MinRefresh.
	r := newRig(t, testidp.Options{}, nil)
	ctx := context.Background()
	if _, err := r.rs.Verify(ctx, r.idp.Token("a", testResource, ScopeRead)); err != nil {
		t.Fatal(err)
	}
	r.idp.Rotate()
	tok := r.idp.Token("a", testResource, ScopeRead)
	if _, err := r.rs.Verify(ctx, tok); !errors.Is(err, errUnknownKey) {
		t.Fatalf("new kid right after a fetch: %v, want errUnknownKey (rate-limited)", err)
	}
	r.clk.Add(defaultMinRefresh)
	if _, err := r.rs.Verify(ctx, tok); err != nil {
		t.Fatalf("new kid after MinRefresh: %v", err)
	}
}

func TestOpenIDDiscoveryFallback(t *testing.T) {
	for _, path := range []string{"", "/realms/ops"} {
		t.Run("path="+path, func(t *testing.T) {
			r := newRig(t, testidp.Options{Discovery: testidp.OpenID, Path: path}, nil)
			if _, err := r.rs.Verify(context.Background(), r.idp.Token("bob", testResource, ScopeWrite)); err != nil {
				t.Fatalf("Verify through OpenID discovery: %v", err)
			}
		})
	}
}

func TestIssuerUnreachable(t *testing.T) {
	r := newRig(t, testidp.Options{}, func(c *Config) { c.Roots = nil }) // the lab root is not trusted
	if err := r.rs.Prefetch(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Prefetch: %v, want a certificate error", err)
	}
	r.clk.Add(defaultMinRefresh)
	_, err := r.rs.Verify(context.Background(), r.idp.Token("a", testResource, ScopeRead))
	if !errors.Is(err, errNoKeys) || statusOf(err) != 503 {
		t.Fatalf("Verify with an untrusted issuer certificate: %v (status %d), want errNoKeys, 503", err, statusOf(err))
	}
}

func TestIntrospection(t *testing.T) {
	r := newRig(t, testidp.Options{IntrospectID: "tlswatch", IntrospectSecret: "s3cr:et/+"}, nil)
	r.rs.cfg.IntrospectURL = r.idp.Issuer + "/introspect"
	r.rs.cfg.IntrospectClientID, r.rs.cfg.IntrospectClientSecret = "tlswatch", "s3cr:et/+"
	ctx := context.Background()
	now := r.clk.Now()
	opaque := func(edit func(map[string]any)) string {
		c := r.idp.Claims("carol", testResource, ScopeRead, ScopeWrite)
		if edit != nil {
			edit(c)
		}
		return r.idp.Opaque(c)
	}
	good := opaque(nil)
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"active", good, nil},
		{"aud array", opaque(func(c map[string]any) { c["aud"] = []string{testResource} }), nil},
		{"unknown to the issuer", "opaque-unknown", errInactive},
		{"inactive", opaque(func(c map[string]any) { c["active"] = false }), errInactive},
		{"wrong audience", opaque(func(c map[string]any) { c["aud"] = "https://other.example.com/mcp" }), errAudience},
		{"no audience", opaque(func(c map[string]any) { delete(c, "aud") }), errAudience},
		{"expired", opaque(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), errExpired},
		{"not yet valid", opaque(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), errNotYetValid},
		{"foreign issuer", opaque(func(c map[string]any) { c["iss"] = "https://evil.example.com" }), errIssuer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := r.rs.Verify(ctx, c.token)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
			if c.want == nil && (p.Subject != "carol" || !p.Has(ScopeWrite)) {
				t.Errorf("principal %+v", p)
			}
		})
	}
	hits := r.idp.Hits("introspect")
	if _, err := r.rs.Verify(ctx, good); err != nil || r.idp.Hits("introspect") != hits {
		t.Errorf("a cached active token was introspected again (%v)", err)
	}
	r.clk.Add(defaultIntrospectionTTL)
	if _, err := r.rs.Verify(ctx, good); err != nil || r.idp.Hits("introspect") != hits+1 {
		t.Errorf("after IntrospectionTTL the token was not introspected again (%v)", err)
	}

	r.rs.cfg.IntrospectClientSecret = "wrong"
	if _, err := r.rs.Verify(ctx, opaque(nil)); !errors.Is(err, errIntrospection) {
		t.Errorf("wrong client secret: %v, want errIntrospection", err)
	}
}

func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache(3)
	now := time.Unix(1000, 0)
	for i := byte(0); i < 10; i++ {
		c.put([32]byte{i}, Principal{Subject: "s"}, now.Add(time.Minute), now)
	}
	if c.len() != 3 {
		t.Errorf("cache holds %d entries, want at most 3", c.len())
	}
	if _, ok := c.get([32]byte{9}, now); !ok {
		t.Error("the last entry put is missing")
	}
	if _, ok := c.get([32]byte{9}, now.Add(time.Minute)); ok {
		t.Error("an expired entry was returned")
	}
}

// Metadata that names another issuer, keys over plain http to a
// non-loopback host, or a document past the size cap are refused.
func TestDiscoveryRefusals(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	var doc atomic.Value
	addr := testlab.ServeTLSHandler(t, &tls.Config{Certificates: []tls.Certificate{cert}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, doc.Load().(string))
	}))
	issuer := "https://" + addr
	cfg := Config{Resource: testResource, Issuers: []string{issuer}, Roots: pki.Roots(), MaxDocumentBytes: 4096}.withDefaults()
	f := newFetcher(cfg)
	defer f.close()
	for _, c := range []struct{ doc, want string }{
		{`{"issuer":"https://evil.example.com","jwks_uri":"https://evil.example.com/jwks"}`, `names issuer "https://evil.example.com"`},
		{`{"issuer":"` + issuer + `"}`, "has no jwks_uri"},
		{`{"issuer":"` + issuer + `","jwks_uri":"http://idp.example.com/jwks"}`, "plain http is allowed for loopback addresses only"},
		{`{"issuer":"` + issuer + `","pad":"` + strings.Repeat("x", 5000) + `"}`, "document larger than 4096 bytes"},
		{`[1,2]`, "not the JSON expected"},
	} {
		doc.Store(c.doc)
		if _, err := f.discover(context.Background(), issuer); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("discover with %.60s: %v, want %q", c.doc, err, c.want)
		}
	}
	if _, err := f.discover(context.Background(), issuer+"/nowhere"); err == nil || !strings.Contains(err.Error(), "no authorization server metadata") {
		t.Errorf("discover of an issuer with no metadata: %v", err)
	}
}
