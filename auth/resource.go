package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"

	"github.com/mark3labs/mcp-go/server"
)

// ResourceServer is tlswatch as an OAuth 2.1 resource server (MCP
// authorization specification). Safe for concurrent use; Close releases
// its idle connections to the issuers.
type ResourceServer struct {
	cfg              Config
	f                *fetcher
	issuers          []*issuerKeys
	cache            *tokenCache
	resourceMetadata string // URL of the metadata document
	metadataPaths    []string
	metadata         http.Handler
}

// New validates cfg (errors name the flag) and builds the resource server.
// It fetches nothing yet: keys are fetched on first use (see Prefetch).
func New(cfg Config) (*ResourceServer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	res, _ := parseResource(cfg.Resource)
	cfg.Resource = res.String()
	rs := &ResourceServer{cfg: cfg, f: newFetcher(cfg), cache: newTokenCache(cfg.MaxCachedTokens)}
	for _, iss := range cfg.Issuers {
		rs.issuers = append(rs.issuers, &issuerKeys{issuer: iss, f: rs.f, cfg: cfg})
	}
	// RFC 9728 section 3.1: the well-known segment goes between the host
	// and the resource's path. The root form is served too, and the
	// local /mcp form when a proxy's public path differs.
	mdPath := server.ProtectedResourceMetadataPath(cfg.Resource)
	rs.resourceMetadata = (&url.URL{Scheme: res.Scheme, Host: res.Host, Path: mdPath}).String()
	rs.metadataPaths = []string{mdPath, server.WellKnownProtectedResourcePath, path.Join(server.WellKnownProtectedResourcePath, "mcp")}
	slices.Sort(rs.metadataPaths)
	rs.metadataPaths = slices.Compact(rs.metadataPaths)
	rs.metadata = server.NewProtectedResourceMetadataHandler(server.ProtectedResourceMetadataConfig{
		Resource:               cfg.Resource,
		AuthorizationServers:   cfg.Issuers,
		ScopesSupported:        []string{ScopeRead, ScopeWrite},
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "tlswatch",
	})
	return rs, nil
}

// Resource is the canonical URI tokens must be issued for.
func (rs *ResourceServer) Resource() string { return rs.cfg.Resource }

// MetadataURL is where clients find the protected-resource metadata.
func (rs *ResourceServer) MetadataURL() string { return rs.resourceMetadata }

// MetadataPaths are the local paths the metadata handler must be mounted
// on, without authentication.
func (rs *ResourceServer) MetadataPaths() []string { return rs.metadataPaths }

// MetadataHandler serves the RFC 9728 document (GET, with permissive CORS
// so browser-based clients can discover it).
func (rs *ResourceServer) MetadataHandler() http.Handler { return rs.metadata }

// Prefetch discovers every issuer and fetches its keys now, so that a
// misconfiguration shows at startup; failures are returned, not fatal, and
// the next token tries again.
func (rs *ResourceServer) Prefetch(ctx context.Context) error {
	var errs []error
	for _, k := range rs.issuers {
		if err := k.refresh(ctx, 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close releases idle connections to the issuers.
func (rs *ResourceServer) Close() { rs.f.close() }

// keysFor returns the keys of a trusted issuer, nil for any other.
func (rs *ResourceServer) keysFor(iss string) *issuerKeys {
	if iss == "" {
		return nil
	}
	for _, k := range rs.issuers {
		if sameIssuer(k.issuer, iss) {
			return k
		}
	}
	return nil
}

// Verify checks a bearer token: a JWT against its issuer's keys, anything
// else by introspection when configured.
func (rs *ResourceServer) Verify(ctx context.Context, raw string) (Principal, error) {
	if alg := jwtAlg(raw); alg != "" {
		return rs.verifyJWT(ctx, raw, alg)
	}
	if rs.cfg.IntrospectURL == "" {
		return Principal{}, errNotAJWT
	}
	return rs.introspect(ctx, raw)
}

// Authenticate answers 401 with the challenge that points at the metadata
// when the token is missing or does not verify.
func (rs *ResourceServer) Authenticate(w http.ResponseWriter, r *http.Request) *http.Request {
	c := challenge{scope: ScopeRead, resourceMetadata: rs.resourceMetadata}
	raw, ok := BearerToken(r)
	if !ok {
		c.write(w, http.StatusUnauthorized, "Unauthorized: a bearer token for "+rs.cfg.Resource+" is required (see "+rs.resourceMetadata+")")
		return nil
	}
	p, err := rs.Verify(r.Context(), raw)
	if err != nil {
		rs.cfg.Logger.Info("token refused", "reason", err.Error(), "remote", r.RemoteAddr)
		if status := statusOf(err); status != http.StatusUnauthorized {
			http.Error(w, "Service unavailable: "+err.Error(), status)
			return nil
		}
		c.err, c.desc = "invalid_token", err.Error()
		c.write(w, http.StatusUnauthorized, "Unauthorized: "+err.Error())
		return nil
	}
	return r.WithContext(WithPrincipal(r.Context(), p))
}

// Authorize reads a POST body (capped by the caller) to find the tools it
// calls, and answers 403 insufficient_scope when the token lacks the scope
// they need; every other request needs ScopeRead. The body stays readable.
func (rs *ResourceServer) Authorize(w http.ResponseWriter, r *http.Request) bool {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		http.Error(w, "Unauthorized", http.StatusUnauthorized) // Authenticate did not run: a wiring bug
		return false
	}
	need := ScopeRead
	if r.Method == http.MethodPost && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "Request body too large", http.StatusRequestEntityTooLarge)
			} else {
				http.Error(w, "Bad request: reading the body: "+err.Error(), http.StatusBadRequest)
			}
			return false
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		need = neededScope(body, rs.cfg.ToolScopes)
	}
	if p.Has(need) {
		return true
	}
	c := challenge{err: "insufficient_scope", scope: ScopeRead, resourceMetadata: rs.resourceMetadata}
	if need == ScopeWrite {
		c.scope = ScopeRead + " " + ScopeWrite
	}
	rs.cfg.Logger.Info("insufficient scope", "subject", p.Subject, "need", need)
	c.write(w, http.StatusForbidden, "Forbidden: this call needs the scope "+need)
	return false
}
