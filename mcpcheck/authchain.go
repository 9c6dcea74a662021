package mcpcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
)

// The authorization chain of an MCP server (MCP authorization, 2025-06-18
// and later): the 401's WWW-Authenticate names protected-resource metadata
// (RFC 9728), which names authorization servers, whose metadata (RFC 8414,
// or OpenID discovery) names the endpoints an agent signs in with. Every
// link is fetched and checked as a client would, and every host in it gets
// the TLS probe, so the Report says which link breaks sign-in.

// Purposes of a fetch (ChainFetch.Purpose).
const (
	PurposeResourceMetadata = "protected_resource_metadata"
	PurposeServerMetadata   = "authorization_server_metadata"
)

// Bounds on what a metadata document may make the Report carry.
const (
	maxAuthServers = 4    // issuers followed
	maxChainList   = 64   // entries kept of any list
	maxChainString = 1024 // characters kept of any string
)

// AuthChain is the authorization chain as followed from a 401.
type AuthChain struct {
	// Resource is the endpoint's canonical URI, which the metadata's
	// resource must name.
	Resource             string            `json:"resource"`
	Fetches              []ChainFetch      `json:"fetches"`
	ProtectedResource    *ResourceMetadata `json:"protected_resource,omitempty"`
	AuthorizationServers []AuthServer      `json:"authorization_servers,omitempty"`
	// Hosts are every distinct host of the chain, the endpoint's first.
	Hosts []HostTLS `json:"hosts"`
}

// ResourceMetadata is the protected-resource metadata found (RFC 9728).
type ResourceMetadata struct {
	URL                    string   `json:"url"`
	Source                 string   `json:"source"`
	Resource               string   `json:"resource"`
	ExpectedResource       string   `json:"expected_resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// AuthServer is one authorization server named by the resource, and what
// its metadata says (RFC 8414).
type AuthServer struct {
	Issuer                            string   `json:"issuer"`
	MetadataURL                       string   `json:"metadata_url,omitempty"`
	MetadataIssuer                    string   `json:"metadata_issuer,omitempty"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                     string   `json:"token_endpoint,omitempty"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	ClientIDMetadataDocumentSupported bool     `json:"client_id_metadata_document_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
}

// chainRun follows one chain. It is used by one goroutine.
type chainRun struct {
	ctx      context.Context
	c        *checker
	client   *http.Client
	hosts    map[string]*chainHost
	order    []*chainHost
	fetches  []*ChainFetch
	role     string // of the fetch in flight, for the hosts its redirects reach
	findings []probe.Finding
}

// authChain follows the chain after an authorization challenge and adds
// its findings and data to res.
func (c *checker) authChain(res *Result) {
	r := &chainRun{ctx: c.ctx, c: c, hosts: map[string]*chainHost{}}
	r.client = r.newChainClient()
	defer r.client.CloseIdleConnections()
	r.seedEndpoint(res.TLS)
	chain := &AuthChain{Resource: canonicalURI(c.url)}
	if prm := r.protectedResource(res.Auth, chain.Resource); prm != nil {
		chain.ProtectedResource = prm
		chain.AuthorizationServers = r.authorizationServers(prm, res.Auth)
	}
	r.hostFindings()
	for _, f := range r.fetches {
		chain.Fetches = append(chain.Fetches, *f)
	}
	for _, h := range r.order {
		chain.Hosts = append(chain.Hosts, h.HostTLS)
	}
	res.AuthChain = chain
	res.Findings = append(res.Findings, r.findings...)
}

func (r *chainRun) add(code, format string, a ...any) {
	r.findings = append(r.findings, probe.NewFinding(code, fmt.Sprintf(format, a...)))
}

// candidate is a URL where a metadata document may be, and which
// discovery rule gave it.
type candidate struct {
	url, source string
	origin      bool // protected-resource metadata at the root: the origin is an acceptable resource too
}

// prmCandidates are, in the order MCP clients try them: the challenge's
// resource_metadata, the path-inserted well-known URL, the root one.
func prmCandidates(endpoint *url.URL, auth *AuthInfo) []candidate {
	var out []candidate
	if auth != nil && auth.ResourceMetadata != "" {
		out = append(out, candidate{url: auth.ResourceMetadata, source: "www_authenticate"})
	}
	base := url.URL{Scheme: "https", Host: endpoint.Host}
	if p := endpoint.EscapedPath(); p != "" && p != "/" {
		u := base
		u.Path = "/.well-known/oauth-protected-resource/" + strings.TrimLeft(endpoint.Path, "/")
		out = append(out, candidate{url: u.String(), source: "path_inserted"})
	}
	root := base
	root.Path = "/.well-known/oauth-protected-resource"
	return append(out, candidate{url: root.String(), source: "root", origin: true})
}

// protectedResource finds and checks the protected-resource metadata.
func (r *chainRun) protectedResource(auth *AuthInfo, resource string) *ResourceMetadata {
	cands := prmCandidates(r.c.url, auth)
	prm, f, i := firstDocument(r, PurposeResourceMetadata, RoleResourceMetadata, cands, parseResourceMetadata)
	if prm == nil {
		r.add(probe.CodeAuthMetadataMissing, "the server asks for authorization but publishes no usable protected-resource metadata, so agents cannot find where to sign in; tried %s",
			tried(r.fetches))
		return nil
	}
	prm.URL, prm.Source = f.URL, cands[i].source
	r.checkResource(prm, resource, cands[i].origin)
	if i > 0 && cands[0].source == "www_authenticate" {
		r.add(probe.CodeAuthMetadataMissing, "the challenge's resource_metadata %s gives no metadata (%s); it was found at %s instead, which clients that follow the challenge never try",
			cands[0].url, describeFetch(*r.fetches[0]), prm.URL)
	}
	return prm
}

// firstDocument fetches the candidates in order and returns the first
// document that parses, its fetch and its index; nil when none does. A
// document that does not parse is recorded as invalid, with why.
func firstDocument[T any](r *chainRun, purpose, role string, cands []candidate, parse func([]byte) (*T, string)) (*T, *ChainFetch, int) {
	for i, cand := range cands {
		f, body := r.fetch(purpose, cand.source, cand.url, role)
		if body == nil {
			continue
		}
		doc, msg := parse(body)
		if msg != "" {
			f.Outcome, f.Detail = OutcomeInvalid, msg
			continue
		}
		return doc, f, i
	}
	return nil, nil, -1
}

// tried lists fetches and their outcomes for a finding's message.
func tried(fs []*ChainFetch) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.URL+" ("+describeFetch(*f)+")")
	}
	return strings.Join(out, ", ")
}

// describeFetch words the outcome of a failed fetch.
func describeFetch(f ChainFetch) string {
	switch {
	case f.Outcome == OutcomeNotFound:
		return fmt.Sprintf("HTTP %d", f.HTTPStatus)
	case f.Detail != "":
		return f.Outcome + ": " + f.Detail
	}
	return f.Outcome
}

// parseResourceMetadata decodes an RFC 9728 document; msg says why it is
// unusable.
func parseResourceMetadata(body []byte) (*ResourceMetadata, string) {
	var doc struct {
		Resource               string   `json:"resource"`
		AuthorizationServers   []string `json:"authorization_servers"`
		ScopesSupported        []string `json:"scopes_supported"`
		BearerMethodsSupported []string `json:"bearer_methods_supported"`
		ResourceName           string   `json:"resource_name"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, decodeProblem(err)
	}
	if doc.Resource == "" {
		return nil, "no resource (RFC 9728 requires it)"
	}
	return &ResourceMetadata{
		Resource:               clip(doc.Resource, maxChainString),
		AuthorizationServers:   clipList(doc.AuthorizationServers),
		ScopesSupported:        clipList(doc.ScopesSupported),
		BearerMethodsSupported: clipList(doc.BearerMethodsSupported),
		ResourceName:           clip(doc.ResourceName, maxChainString),
	}, ""
}

// decodeProblem names the field of a document that has the wrong type.
func decodeProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s has the wrong type (%s)", te.Field, te.Value)
	}
	return "not valid JSON metadata"
}

func clipList(l []string) []string {
	if len(l) > maxChainList {
		l = l[:maxChainList]
	}
	out := make([]string, 0, len(l))
	for _, s := range l {
		out = append(out, clip(s, maxChainString))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// checkResource: the metadata must be for this endpoint (RFC 9728 section
// 3.3). Metadata found at the root may name the origin instead.
func (r *chainRun) checkResource(prm *ResourceMetadata, resource string, originOK bool) {
	prm.ExpectedResource = resource
	ok := sameResource(prm.Resource, resource)
	if originOK {
		origin := canonicalURI(&url.URL{Scheme: "https", Host: r.c.url.Host})
		if origin != resource {
			prm.ExpectedResource = resource + " or " + origin
		}
		ok = ok || sameResource(prm.Resource, origin)
	}
	if !ok {
		r.add(probe.CodeAuthResourceMismatch, "the protected-resource metadata at %s is for resource %q, but agents use %s: clients refuse metadata for another resource and never sign in",
			prm.URL, prm.Resource, prm.ExpectedResource)
	}
}

// canonicalURI is the MCP canonical server URI of u: lower-case scheme and
// host, no default port, no query or fragment, no trailing slash.
func canonicalURI(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(scheme == "https" && p == "443") && !(scheme == "http" && p == "80") {
		host += ":" + p
	}
	return scheme + "://" + host + strings.TrimSuffix(u.EscapedPath(), "/")
}

// sameResource compares a resource identifier with a canonical URI,
// tolerating only case in scheme and host, an explicit default port and a
// trailing slash.
func sameResource(got, canonical string) bool {
	u, err := url.Parse(strings.TrimSpace(got))
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	return canonicalURI(u) == canonical
}

// scopesOf is what the resource advertises: its metadata's
// scopes_supported and the challenge's scope.
func scopesOf(prm *ResourceMetadata, auth *AuthInfo) []string {
	out := slices.Clone(prm.ScopesSupported)
	if auth != nil {
		out = append(out, strings.Fields(auth.Scope)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
