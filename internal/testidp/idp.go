// Package testidp is an OAuth 2.1 authorization server for tests, on
// loopback: RFC 8414 metadata (or OpenID Connect Discovery only), a JWKS
// whose keys rotate on demand, RFC 9068 JWT access tokens signed by it (and
// deliberately broken ones), RFC 7662 introspection of opaque tokens, and a
// client-credentials token endpoint for SDK clients. It serves HTTPS with a
// caller's tls.Config, or plain HTTP (loopback) without one.
package testidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Discovery selects which metadata documents the server publishes.
type Discovery int

const (
	// OAuth serves RFC 8414 metadata only.
	OAuth Discovery = iota
	// OpenID serves OpenID Connect Discovery only (path appended), so a
	// resource server must fall back to it.
	OpenID
)

// Client is a client_credentials client: its secret and the scopes it may
// be granted.
type Client struct {
	Secret string
	Scopes []string
}

// Options configure New. The zero value serves plain HTTP on 127.0.0.1.
type Options struct {
	TLS       *tls.Config // HTTPS with this config; nil: plain HTTP
	Path      string      // issuer path such as "/tenant-a"; "" for none
	Discovery Discovery
	// Clients may get tokens at the token endpoint, by client id.
	Clients map[string]Client
	// IntrospectID and IntrospectSecret authenticate the resource server
	// at the introspection endpoint.
	IntrospectID, IntrospectSecret string
	// Opaque makes the token endpoint issue opaque tokens (introspection).
	Opaque bool
	Now    func() time.Time // default time.Now
}

// IdP is a running authorization server. Safe for concurrent use.
type IdP struct {
	// Issuer is the issuer identifier: https://127.0.0.1:PORT[/path].
	Issuer string

	opts Options
	srv  *http.Server
	ln   net.Listener

	mu     sync.Mutex
	keys   []key // published; the last is current
	rsa    key   // published too; signs RS256/PS256 on request
	opaque map[string]map[string]any
	hits   map[string]int
}

type key struct {
	kid  string
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
}

// New starts the server; Close stops it.
func New(o Options) (*IdP, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
		ln = tls.NewListener(ln, o.TLS.Clone())
	}
	i := &IdP{
		Issuer: scheme + "://" + ln.Addr().String() + o.Path,
		opts:   o, ln: ln,
		opaque: map[string]map[string]any{},
		hits:   map[string]int{},
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	i.rsa = key{kid: "rsa-1", priv: rk, alg: jose.RS256}
	i.Rotate()
	i.srv = &http.Server{Handler: i.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go i.srv.Serve(ln)
	return i, nil
}

// Close stops the server.
func (i *IdP) Close() { i.srv.Close() }

// Rotate publishes a new ES256 key and signs with it from now on; the old
// keys stay published until Retire.
func (i *IdP) Rotate() {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append(i.keys, key{kid: fmt.Sprintf("ec-%d", len(i.keys)+1), priv: k, alg: jose.ES256})
}

// Retire withdraws every key but the current one (and the RSA key).
func (i *IdP) Retire() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = i.keys[len(i.keys)-1:]
}

// Hits counts requests by endpoint: "metadata", "jwks", "token", "introspect".
func (i *IdP) Hits(endpoint string) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.hits[endpoint]
}

func (i *IdP) hit(endpoint string) {
	i.mu.Lock()
	i.hits[endpoint]++
	i.mu.Unlock()
}

// Claims returns the claims of a valid access token for audience: iss,
// sub, client_id, aud, iat, nbf, exp (in an hour) and scope.
func (i *IdP) Claims(subject, audience string, scopes ...string) map[string]any {
	now := i.opts.Now()
	return map[string]any{
		"iss": i.Issuer, "sub": subject, "client_id": subject, "aud": audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"scope": strings.Join(scopes, " "), "jti": randomHex(8),
	}
}

// Token signs a valid access token (typ at+jwt, the current key).
func (i *IdP) Token(subject, audience string, scopes ...string) string {
	return i.Sign(i.Claims(subject, audience, scopes...), SignOptions{})
}

// SignOptions bend a token for negative tests.
type SignOptions struct {
	// Alg: "" signs ES256 with the current key; RS256 and PS256 use the
	// RSA key; HS256 uses the RSA public key as an HMAC secret (the
	// algorithm-confusion attack).
	Alg jose.SignatureAlgorithm
	// Typ: "" means at+jwt; "-" omits the header.
	Typ string
	// Unpublished signs with a fresh key the JWKS never shows (its kid is
	// unknown to every verifier).
	Unpublished bool
}

// Sign signs claims as a JWS compact token.
func (i *IdP) Sign(claims map[string]any, o SignOptions) string {
	i.mu.Lock()
	k := i.keys[len(i.keys)-1]
	rk := i.rsa
	i.mu.Unlock()
	var sk jose.SigningKey
	switch o.Alg {
	case "", jose.ES256:
		sk = jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}
	case jose.RS256, jose.PS256:
		sk = jose.SigningKey{Algorithm: o.Alg, Key: jose.JSONWebKey{Key: rk.priv, KeyID: rk.kid}}
	case jose.HS256:
		pub, _ := json.Marshal(jose.JSONWebKey{Key: rk.priv.Public(), KeyID: rk.kid})
		sk = jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: pub, KeyID: rk.kid}}
	default:
		panic("testidp: unsupported alg " + string(o.Alg))
	}
	if o.Unpublished {
		pk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sk = jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: pk, KeyID: "unpublished-" + randomHex(4)}}
	}
	so := &jose.SignerOptions{}
	switch o.Typ {
	case "":
		so = so.WithType("at+jwt")
	case "-":
	default:
		so = so.WithType(jose.ContentType(o.Typ))
	}
	signer, err := jose.NewSigner(sk, so)
	if err != nil {
		panic(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// Unsigned returns claims as an "alg: none" token.
func Unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt"})
	p, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "."
}

// Opaque registers an opaque token whose introspection answers claims
// (plus "active": true unless claims say otherwise).
func (i *IdP) Opaque(claims map[string]any) string {
	tok := "opaque-" + randomHex(16)
	i.mu.Lock()
	defer i.mu.Unlock()
	c := map[string]any{"active": true, "token_type": "Bearer"}
	for k, v := range claims {
		c[k] = v
	}
	i.opaque[tok] = c
	return tok
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start is New for tests: it fails t on error and closes on cleanup.
func Start(t testing.TB, o Options) *IdP {
	t.Helper()
	i, err := New(o)
	if err != nil {
		t.Fatalf("testidp: %v", err)
	}
	t.Cleanup(i.Close)
	return i
}
