package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/tlswatch/tlswatch/auth"
	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/tools"
)

// authMode names the HTTP authentication mode for the startup log line.
func authMode(cfg Config) string {
	switch {
	case len(cfg.AuthIssuers) > 0:
		return "oauth"
	case cfg.Token != "":
		return "token"
	}
	return "none"
}

// newAuthenticator returns the HTTP listener's Authenticator: an OAuth
// resource server with --auth-issuer (rs is then set; Close it), the
// static token with --token, else none. The canonical URI tokens must be
// issued for is --public-url, or the listener's address.
func newAuthenticator(ctx context.Context, cfg Config, roots *x509.CertPool, addr net.Addr, logger *slog.Logger) (authn auth.Authenticator, rs *auth.ResourceServer, err error) {
	switch authMode(cfg) {
	case "token":
		return auth.NewStaticToken(cfg.Token), nil, nil
	case "none":
		return auth.Open{}, nil, nil
	}
	resource, err := auth.CanonicalResource(cfg.PublicURL, addr, endpointPath)
	if err != nil {
		return nil, nil, err
	}
	// The issuers are the operator's choice, often on the company network,
	// so --deny-private does not apply to them; the default refusals
	// (cloud metadata, link-local) and --allow-cidr/--deny-cidr do, which
	// also covers a jwks_uri that a tampered metadata document names.
	policy, err := netpolicy.New(netpolicy.Config{AllowCIDRs: cfg.AllowCIDRs, DenyCIDRs: cfg.DenyCIDRs})
	if err != nil {
		return nil, nil, err
	}
	rs, err = auth.New(auth.Config{
		Resource:               resource,
		Issuers:                cfg.AuthIssuers,
		IntrospectURL:          cfg.AuthIntrospect,
		IntrospectClientID:     cfg.IntrospectClientID,
		IntrospectClientSecret: cfg.IntrospectClientSecret,
		ToolScopes:             tools.ToolScopes(),
		Roots:                  roots,
		DialContext:            policy.Dialer(net.Dialer{Timeout: 10 * time.Second}).DialContext,
		Logger:                 logger.With("component", "auth"),
	})
	if err != nil {
		return nil, nil, err
	}
	if u, _ := url.Parse(resource); u.Scheme == "http" && !isLoopbackAddr(addr) {
		logger.Warn("OAuth over plain http beyond loopback: tokens cross the network in clear text; serve behind a TLS proxy and set --public-url https://...")
	}
	logger.Info("OAuth resource server", "resource", resource, "metadata", rs.MetadataURL(), "issuers", cfg.AuthIssuers)
	if err := rs.Prefetch(ctx); err != nil {
		logger.Warn("authorization server keys not fetched yet; tokens are refused until they are", "err", err)
	}
	return rs, rs, nil
}
