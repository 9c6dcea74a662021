// Package auth decides who may use tlswatch over HTTP and what they may do.
// It owns the three modes of the HTTP transport: open (loopback use), a
// static bearer token (one person, one machine), and an OAuth 2.1 resource
// server per the MCP authorization specification: protected-resource
// metadata (RFC 9728), access tokens verified as JWTs against the issuers'
// keys (RFC 9068, keys found by RFC 8414 discovery) or by introspection
// (RFC 7662), the audience bound to tlswatch's canonical URI (RFC 8707), and
// scopes per JSON-RPC call. Stdio never comes here: the specification leaves
// stdio credentials to the environment.
//
// Tokens are never logged, echoed or kept: caches are keyed by a digest.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// The OAuth scopes of tlswatch (DESIGN.md). Write implies read: a token that
// may add watches may also list them.
const (
	ScopeRead  = "tlswatch:read"
	ScopeWrite = "tlswatch:write"
)

// Principal is who sent a request, as the token says.
type Principal struct {
	Subject  string // the token's sub, else its client_id
	ClientID string
	Issuer   string
	Scopes   []string
}

// Has reports whether the principal holds scope (write implies read).
func (p Principal) Has(scope string) bool {
	if slices.Contains(p.Scopes, scope) {
		return true
	}
	return scope == ScopeRead && slices.Contains(p.Scopes, ScopeWrite)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of an authenticated OAuth request;
// false over stdio, without auth, and with a static token (no identity).
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Authenticator decides who sent an HTTP request and what it may do. The
// transport calls Authenticate first, from the headers alone, before any of
// the body is read; then, once the body is capped, Authorize. Both write the
// refusal themselves. Implementations MUST be safe for concurrent use and
// MUST NOT log or echo a token.
type Authenticator interface {
	// Authenticate returns the request to serve (its context may carry
	// the Principal), or nil after writing a 401.
	Authenticate(w http.ResponseWriter, r *http.Request) *http.Request
	// Authorize may read the body (it stays readable for the next
	// handler) to learn what the request needs. It returns false after
	// writing a 403 (or 413 when the body exceeds its cap).
	Authorize(w http.ResponseWriter, r *http.Request) bool
}

// Open is the Authenticator of a server without auth (loopback use).
type Open struct{}

// Authenticate accepts every request.
func (Open) Authenticate(_ http.ResponseWriter, r *http.Request) *http.Request { return r }

// Authorize accepts every request.
func (Open) Authorize(http.ResponseWriter, *http.Request) bool { return true }

// StaticToken is the Authenticator of `serve --token`: one shared secret,
// no identity, no scopes. Its 401 is RFC 6750-shaped but names no
// resource_metadata, since there is no authorization server to discover.
type StaticToken struct{ sum [32]byte }

// NewStaticToken returns the authenticator for token, which must not be
// empty (the caller names the flag).
func NewStaticToken(token string) *StaticToken {
	return &StaticToken{sum: sha256.Sum256([]byte(token))}
}

// Authenticate compares digests: constant time, and independent of the
// length of what the client sent.
func (s *StaticToken) Authenticate(w http.ResponseWriter, r *http.Request) *http.Request {
	got, ok := BearerToken(r)
	sum := sha256.Sum256([]byte(got))
	if ok && subtle.ConstantTimeCompare(sum[:], s.sum[:]) == 1 {
		return r
	}
	c := challenge{realm: "tlswatch"}
	if ok {
		c.err = "invalid_token"
	}
	c.write(w, http.StatusUnauthorized, "Unauthorized: a valid bearer token is required")
	return nil
}

// Authorize accepts every authenticated request: the token grants all.
func (*StaticToken) Authorize(http.ResponseWriter, *http.Request) bool { return true }

// BearerToken extracts the token of an "Authorization: Bearer <token>"
// header. Tokens are taken from that header only, never from the query
// string or the body (MCP authorization specification).
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

var (
	_ Authenticator = Open{}
	_ Authenticator = (*StaticToken)(nil)
	_ Authenticator = (*ResourceServer)(nil)
)
