package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Config sets up a ResourceServer. The zero value of each limit means its
// default.
type Config struct {
	// Resource is tlswatch's canonical URI (RFC 8707), e.g.
	// https://tlswatch.example.com/mcp: the audience every token must
	// carry and the resource of the metadata document. See
	// CanonicalResource.
	Resource string
	// Issuers are the authorization servers whose tokens are accepted
	// (--auth-issuer), as their metadata names them.
	Issuers []string
	// IntrospectURL, when set, verifies tokens that are not JWTs by RFC
	// 7662 introspection (--auth-introspect), with HTTP Basic client
	// authentication by IntrospectClientID and IntrospectClientSecret.
	IntrospectURL          string
	IntrospectClientID     string
	IntrospectClientSecret string
	// ToolScopes maps a tool name to the scope calling it needs; a tool
	// it does not name needs ScopeWrite (fail closed).
	ToolScopes map[string]string

	// Roots verify the issuers' certificates: the system roots plus
	// --ca-file. Nil means the system roots.
	Roots *x509.CertPool
	// DialContext dials issuers and the introspection endpoint (serve
	// passes the outbound policy's dialer). Default: a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock tokens are judged by. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger

	// FetchTimeout bounds each request to an issuer. Default 10 s.
	FetchTimeout time.Duration
	// MaxDocumentBytes caps each document read from an issuer. Default 1 MiB.
	MaxDocumentBytes int64
	// KeyTTL is how long fetched keys are trusted before the issuer is
	// asked again, so that a key the issuer withdrew stops verifying.
	// Default 1 h.
	KeyTTL time.Duration
	// MinRefresh is the least time between two key fetches from one
	// issuer: a stream of tokens with unknown key ids cannot make
	// tlswatch hammer the issuer. Default 10 s.
	MinRefresh time.Duration
	// ClockSkew is tolerated on exp, nbf and iat. Default 30 s.
	ClockSkew time.Duration
	// IntrospectionTTL is how long an active introspection answer is
	// reused (never past the token's exp). Default 60 s.
	IntrospectionTTL time.Duration
	// MaxCachedTokens bounds the introspection cache. Default 10,000.
	MaxCachedTokens int
}

const (
	defaultFetchTimeout     = 10 * time.Second
	defaultMaxDocumentBytes = 1 << 20
	defaultKeyTTL           = time.Hour
	defaultMinRefresh       = 10 * time.Second
	defaultClockSkew        = 30 * time.Second
	defaultIntrospectionTTL = time.Minute
	defaultMaxCachedTokens  = 10000
	// maxStaleKeys: past this without a successful fetch, cached keys are
	// no longer used at all.
	maxStaleKeys = 24 * time.Hour
)

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DialContext == nil {
		c.DialContext = (&net.Dialer{Timeout: defaultFetchTimeout}).DialContext
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.FetchTimeout, defaultFetchTimeout)
	def(&c.KeyTTL, defaultKeyTTL)
	def(&c.MinRefresh, defaultMinRefresh)
	def(&c.ClockSkew, defaultClockSkew)
	def(&c.IntrospectionTTL, defaultIntrospectionTTL)
	if c.MaxDocumentBytes <= 0 {
		c.MaxDocumentBytes = defaultMaxDocumentBytes
	}
	if c.MaxCachedTokens <= 0 {
		c.MaxCachedTokens = defaultMaxCachedTokens
	}
	return c
}

// validate checks what the operator gave; errors name the flag.
func (c Config) validate() error {
	if _, err := parseResource(c.Resource); err != nil {
		return fmt.Errorf("--public-url: %w", err)
	}
	if len(c.Issuers) == 0 {
		return errors.New("--auth-issuer: at least one issuer is required")
	}
	for _, iss := range c.Issuers {
		if err := checkFetchURL(iss); err != nil {
			return fmt.Errorf("--auth-issuer %s: %w", iss, err)
		}
	}
	if c.IntrospectURL != "" {
		if err := checkFetchURL(c.IntrospectURL); err != nil {
			return fmt.Errorf("--auth-introspect %s: %w", c.IntrospectURL, err)
		}
		if c.IntrospectClientID == "" || c.IntrospectClientSecret == "" {
			return errors.New("--auth-introspect: client credentials required (env TLSWATCH_INTROSPECT_CLIENT_ID and TLSWATCH_INTROSPECT_CLIENT_SECRET)")
		}
	}
	return nil
}

// checkFetchURL enforces where tlswatch fetches issuer documents, keys and
// introspection answers from: HTTPS, or plain HTTP to a loopback address
// only (a token checked over a network in clear text proves nothing).
func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("want an absolute https URL without user info, query or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return errors.New("plain http is allowed for loopback addresses only; use https")
	}
	return fmt.Errorf("scheme %q: want https", u.Scheme)
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// CanonicalResource is tlswatch's canonical URI: publicURL when the operator
// gave one (--public-url, behind a proxy; a URL without a path gets
// endpointPath), else http://ADDR/endpointPath as served on the listener.
// A listener on a wildcard address has no such name: then publicURL is
// required.
func CanonicalResource(publicURL string, listener net.Addr, endpointPath string) (string, error) {
	if publicURL != "" {
		u, err := parseResource(publicURL)
		if err != nil {
			return "", fmt.Errorf("--public-url %s: %w", publicURL, err)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = endpointPath
		}
		return u.String(), nil
	}
	ap, err := netip.ParseAddrPort(listener.String())
	if err != nil {
		return "", fmt.Errorf("--public-url: required: cannot name the listener %s", listener)
	}
	if ap.Addr().IsUnspecified() {
		return "", fmt.Errorf("--public-url: required when --http binds every interface (%s): tokens are bound to one URL", listener)
	}
	return "http://" + ap.String() + endpointPath, nil
}

// parseResource checks a resource URI (RFC 8707: absolute, no fragment) and
// returns it with scheme and host lower-cased, the canonical form.
func parseResource(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("want an absolute http(s) URL such as https://tlswatch.example.com/mcp")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, errors.New("must not carry user info, a query or a fragment")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	return u, nil
}

// sameIssuer compares issuer identifiers one trailing slash aside: some
// identity providers put one in iss and operators write it either way.
func sameIssuer(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// audienceMatches reports whether aud names resource, tolerating a trailing
// slash only.
func audienceMatches(aud []string, resource string) bool {
	want := strings.TrimSuffix(resource, "/")
	for _, a := range aud {
		if a == want || a == want+"/" {
			return true
		}
	}
	return false
}
