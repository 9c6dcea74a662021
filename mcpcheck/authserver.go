package mcpcheck

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
)

// authorizationServers follows each issuer the resource names.
func (r *chainRun) authorizationServers(prm *ResourceMetadata, auth *AuthInfo) []AuthServer {
	if len(prm.AuthorizationServers) == 0 {
		r.add(probe.CodeAuthServersMissing, "the protected-resource metadata at %s lists no authorization_servers: agents cannot learn where to sign in", prm.URL)
		return nil
	}
	scopes := scopesOf(prm, auth)
	var out []AuthServer
	for _, issuer := range prm.AuthorizationServers[:min(len(prm.AuthorizationServers), maxAuthServers)] {
		out = append(out, r.authorizationServer(issuer, scopes))
	}
	return out
}

// asMetadataURLs are, in the order MCP clients try them, RFC 8414's
// path-inserted URL, then OpenID discovery path-inserted and appended (for
// an issuer without a path, the two well-known URLs at the root).
func asMetadataURLs(issuer *url.URL) []candidate {
	base := url.URL{Scheme: "https", Host: issuer.Host}
	at := func(path string) string { u := base; u.Path = path; return u.String() }
	p := strings.Trim(issuer.Path, "/")
	if p == "" {
		return []candidate{
			{url: at("/.well-known/oauth-authorization-server"), source: "rfc8414"},
			{url: at("/.well-known/openid-configuration"), source: "openid"},
		}
	}
	return []candidate{
		{url: at("/.well-known/oauth-authorization-server/" + p), source: "rfc8414"},
		{url: at("/.well-known/openid-configuration/" + p), source: "openid_path_inserted"},
		{url: at("/" + p + "/.well-known/openid-configuration"), source: "openid"},
	}
}

// asDoc is the part of RFC 8414 metadata the chain checks.
type asDoc struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	ClientIDMetadataDocumentSupported bool     `json:"client_id_metadata_document_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
}

// authorizationServer fetches and checks one issuer's metadata.
func (r *chainRun) authorizationServer(issuer string, scopes []string) AuthServer {
	as := AuthServer{Issuer: clip(issuer, maxChainString)}
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		r.add(probe.CodeAuthServerMetadata, "the authorization server %q named by the resource is not an https URL without query or fragment, as an issuer must be (RFC 8414)", as.Issuer)
		return as
	}
	first := len(r.fetches)
	doc, f, _ := firstDocument(r, PurposeServerMetadata, RoleAuthorizationServer, asMetadataURLs(u), parseServerMetadata)
	if doc == nil {
		r.add(probe.CodeAuthServerMetadata, "no metadata for the authorization server %s: tried %s", as.Issuer, tried(r.fetches[first:]))
		return as
	}
	as.MetadataURL = f.URL
	as.MetadataIssuer = clip(doc.Issuer, maxChainString)
	as.AuthorizationEndpoint = clip(doc.AuthorizationEndpoint, maxChainString)
	as.TokenEndpoint = clip(doc.TokenEndpoint, maxChainString)
	as.RegistrationEndpoint = clip(doc.RegistrationEndpoint, maxChainString)
	as.ClientIDMetadataDocumentSupported = doc.ClientIDMetadataDocumentSupported
	as.CodeChallengeMethodsSupported = clipList(doc.CodeChallengeMethodsSupported)
	as.ScopesSupported = clipList(doc.ScopesSupported)
	r.checkServer(as, doc, scopes)
	return as
}

func parseServerMetadata(body []byte) (*asDoc, string) {
	var d asDoc
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, decodeProblem(err)
	}
	return &d, ""
}

// checkServer applies what MCP clients require of an authorization server.
func (r *chainRun) checkServer(as AuthServer, doc *asDoc, scopes []string) {
	switch {
	case doc.Issuer == "":
		r.add(probe.CodeAuthIssuerMismatch, "the metadata at %s names no issuer; clients require it to equal %s", as.MetadataURL, as.Issuer)
	case strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(as.Issuer, "/"):
		r.add(probe.CodeAuthIssuerMismatch, "the metadata at %s names issuer %q, but it was fetched for %s: clients refuse it (RFC 8414 section 3.3)", as.MetadataURL, as.MetadataIssuer, as.Issuer)
	}
	for _, ep := range []struct{ name, value, role string }{
		{"authorization_endpoint", doc.AuthorizationEndpoint, RoleAuthorizationEndpoint},
		{"token_endpoint", doc.TokenEndpoint, RoleTokenEndpoint},
		{"registration_endpoint", doc.RegistrationEndpoint, RoleRegistrationEndpoint},
	} {
		if ep.value == "" && ep.role == RoleRegistrationEndpoint {
			continue
		}
		u, err := url.Parse(ep.value)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			r.add(probe.CodeAuthServerMetadata, "the metadata at %s has no usable %s (%q): agents need an https URL there", as.MetadataURL, ep.name, clip(ep.value, 200))
			continue
		}
		r.probeHost(u, ep.role)
	}
	switch {
	case len(doc.CodeChallengeMethodsSupported) == 0:
		r.add(probe.CodeAuthPKCEMissing, "the metadata of %s has no code_challenge_methods_supported: MCP clients refuse to sign in without PKCE S256", as.Issuer)
	case !slices.Contains(doc.CodeChallengeMethodsSupported, "S256"):
		r.add(probe.CodeAuthPKCEMissing, "the metadata of %s offers PKCE %s but not S256, which MCP clients require", as.Issuer, strings.Join(as.CodeChallengeMethodsSupported, ", "))
	}
	if !doc.ClientIDMetadataDocumentSupported && doc.RegistrationEndpoint == "" {
		r.add(probe.CodeAuthRegistrationMissing, "%s offers neither client ID metadata documents (client_id_metadata_document_supported) nor dynamic registration (registration_endpoint): only clients registered by hand can sign in", as.Issuer)
	}
	if doc.ScopesSupported != nil {
		var unknown []string
		for _, s := range scopes {
			if !slices.Contains(doc.ScopesSupported, s) {
				unknown = append(unknown, s)
			}
		}
		if len(unknown) > 0 {
			r.add(probe.CodeAuthScopeUnknown, "the resource asks for scope %s, which %s does not list in scopes_supported: sign-in may fail with invalid_scope",
				strings.Join(clipList(unknown), ", "), as.Issuer)
		}
	}
}

// hostFindings reports every chain host (the endpoint aside: its TLS is
// the Report's) whose certificate or connection fails a standard client,
// or whose findings are critical. A host that could not be reached at all
// for a metadata fetch is already reported by that fetch.
func (r *chainRun) hostFindings() {
	for _, h := range r.order[1:] {
		if h.Status != probe.StatusDown && h.Status != probe.StatusCritical {
			continue
		}
		if !h.Reachable && (slices.Contains(h.Roles, RoleResourceMetadata) || slices.Contains(h.Roles, RoleAuthorizationServer)) {
			continue
		}
		var nested []string
		for _, f := range h.Findings {
			if f.Severity == probe.SeverityCritical {
				nested = append(nested, f.Code+": "+clip(f.Message, 300))
			}
		}
		if len(nested) == 0 && h.downMsg != "" {
			nested = append(nested, h.downMsg)
		}
		r.add(probe.CodeAuthServerTLS, "%s (%s) fails TLS for a standard client, so agents fail at sign-in: %s",
			labelHost(h), strings.Join(h.Roles, ", "), strings.Join(nested, "; "))
	}
}

func labelHost(h *chainHost) string {
	host := h.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s:%d", host, h.Port)
}
