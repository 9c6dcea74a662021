package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// asMetadata is what tlswatch reads of an authorization server's metadata
// (RFC 8414; OpenID Connect Discovery uses the same names).
type asMetadata struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// discoveryURLs lists where the metadata of issuer may be, in the order of
// the MCP authorization specification: RFC 8414 with the well-known segment
// inserted before the issuer's path, then OpenID Connect Discovery inserted,
// then appended (the OpenID form for issuers with a path).
func discoveryURLs(issuer string) []string {
	i := strings.Index(issuer, "://")
	origin, path := issuer, ""
	if j := strings.IndexByte(issuer[i+3:], '/'); j >= 0 {
		origin, path = issuer[:i+3+j], strings.TrimSuffix(issuer[i+3+j:], "/")
	}
	if path == "" {
		return []string{origin + "/.well-known/oauth-authorization-server", origin + "/.well-known/openid-configuration"}
	}
	return []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + "/.well-known/openid-configuration" + path,
		origin + path + "/.well-known/openid-configuration",
	}
}

// discover fetches the metadata of issuer, moving to the next well-known
// URL only when one answers 4xx, and checks that the document names the
// issuer it was fetched for (RFC 8414 section 3.3) and a usable jwks_uri.
func (f *fetcher) discover(ctx context.Context, issuer string) (asMetadata, error) {
	var tried []string
	for _, u := range discoveryURLs(issuer) {
		var md asMetadata
		err := f.getJSON(ctx, u, &md)
		var se *statusError
		if errors.As(err, &se) && se.code >= 400 && se.code < 500 {
			tried = append(tried, fmt.Sprintf("%s (HTTP %d)", u, se.code))
			continue
		}
		if err != nil {
			return asMetadata{}, err
		}
		if !sameIssuer(md.Issuer, issuer) {
			return asMetadata{}, fmt.Errorf("%s names issuer %q, not %q", u, md.Issuer, issuer)
		}
		if md.JWKSURI == "" {
			return asMetadata{}, fmt.Errorf("%s has no jwks_uri", u)
		}
		if err := checkFetchURL(md.JWKSURI); err != nil {
			return asMetadata{}, fmt.Errorf("%s: jwks_uri %s: %w", u, md.JWKSURI, err)
		}
		return md, nil
	}
	return asMetadata{}, fmt.Errorf("no authorization server metadata for %s: tried %s", issuer, strings.Join(tried, ", "))
}

// maxKeys bounds one issuer's key set; real ones hold a handful.
const maxKeys = 100

// fetchKeys reads a JWKS, keeping the public signing keys go-jose
// understands and skipping the rest (RFC 7517 section 5: ignore keys of an
// unknown type), so one exotic key does not disable an issuer.
func (f *fetcher) fetchKeys(ctx context.Context, jwksURI string) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := f.getJSON(ctx, jwksURI, &set); err != nil {
		return nil, err
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if json.Unmarshal(raw, &k) != nil || !k.Valid() || !k.IsPublic() || k.Use == "enc" {
			continue
		}
		if keys = append(keys, k); len(keys) == maxKeys {
			break
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("GET %s: no usable signing key", jwksURI)
	}
	return keys, nil
}

// Key verification outcomes, worded for the client's error_description.
var (
	errUnknownKey   = errors.New("the token is signed with a key its issuer does not publish")
	errBadSignature = errors.New("the token signature does not verify")
	errNoKeys       = errors.New("the issuer's keys are unavailable")
	errRefreshLimit = errors.New("keys were fetched moments ago")
)

// issuerKeys is one issuer's signing keys: discovered and fetched on first
// use, trusted for KeyTTL, fetched again for a key id they do not hold (at
// most once per MinRefresh), and not used at all once maxStaleKeys passed
// without a successful fetch. Safe for concurrent use.
type issuerKeys struct {
	issuer string
	f      *fetcher
	cfg    Config

	fetchMu sync.Mutex // one fetch at a time
	mu      sync.Mutex // guards the fields below
	keys    []jose.JSONWebKey
	gen     int       // successful fetches so far
	fetched time.Time // of the last successful fetch
	tried   time.Time // of the last attempt
}

func (k *issuerKeys) snapshot() ([]jose.JSONWebKey, int, time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, k.gen, k.fetched
}

// verify runs check with the key the token names (every key when it names
// none) until one verifies.
func (k *issuerKeys) verify(ctx context.Context, kid string, check func(*jose.JSONWebKey) error) error {
	keys, gen, fetched := k.snapshot()
	now := k.cfg.Now()
	if gen == 0 || now.Sub(fetched) >= k.cfg.KeyTTL || !hasKey(keys, kid) {
		if err := k.refresh(ctx, gen); err != nil && !errors.Is(err, errRefreshLimit) {
			k.cfg.Logger.Warn("fetching the issuer's keys", "issuer", k.issuer, "err", err)
		}
		keys, gen, fetched = k.snapshot()
	}
	if gen == 0 || now.Sub(fetched) >= maxStaleKeys {
		return errNoKeys
	}
	tried := false
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		tried = true
		if check(&keys[i]) == nil {
			return nil
		}
	}
	if !tried {
		return errUnknownKey
	}
	return errBadSignature
}

func hasKey(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if kid == "" || k.KeyID == kid {
			return true
		}
	}
	return false
}

// refresh discovers the issuer's jwks_uri and fetches its keys, unless
// another caller did so since generation seen, or the last attempt is less
// than MinRefresh old.
func (k *issuerKeys) refresh(ctx context.Context, seen int) error {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	k.mu.Lock()
	now := k.cfg.Now()
	if k.gen != seen {
		k.mu.Unlock()
		return nil
	}
	if !k.tried.IsZero() && now.Sub(k.tried) < k.cfg.MinRefresh {
		k.mu.Unlock()
		return errRefreshLimit
	}
	k.tried = now
	k.mu.Unlock()

	md, err := k.f.discover(ctx, k.issuer)
	if err != nil {
		return err
	}
	keys, err := k.f.fetchKeys(ctx, md.JWKSURI)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.keys, k.fetched = keys, k.cfg.Now()
	k.gen++
	k.mu.Unlock()
	return nil
}

// statusOf maps a fetch failure to the status a client should see: the
// issuer being unreachable is the server's trouble, not the token's.
func statusOf(err error) int {
	if errors.Is(err, errNoKeys) {
		return http.StatusServiceUnavailable
	}
	return http.StatusUnauthorized
}
