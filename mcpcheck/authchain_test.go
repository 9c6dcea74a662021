package mcpcheck

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// A consistent chain: mcp_auth_required and nothing else, and the chain as
// data (every fetch, every host).
func TestAuthChainConsistent(t *testing.T) {
	l := newAuthLab(t)
	r := l.run(t)
	if got := authCodes(r); !slices.Equal(got, []string{probe.CodeMCPAuthRequired}) {
		t.Fatalf("codes %v, want only mcp_auth_required; findings %v", got, r.Findings)
	}
	if r.Status != probe.StatusOK {
		t.Errorf("status %s", r.Status)
	}
	ch := r.AuthChain
	if ch == nil || ch.Resource != l.endpoint || ch.ProtectedResource == nil || len(ch.AuthorizationServers) != 1 {
		t.Fatalf("chain %+v", ch)
	}
	if p := ch.ProtectedResource; p.Source != "www_authenticate" || p.Resource != l.endpoint || p.URL != l.mcpBase+l.prmPath {
		t.Errorf("protected resource %+v", p)
	}
	as := ch.AuthorizationServers[0]
	if as.Issuer != l.asBase || as.MetadataURL != l.asBase+"/.well-known/oauth-authorization-server" || as.MetadataIssuer != l.asBase ||
		as.TokenEndpoint != l.asBase+"/token" || !slices.Equal(as.CodeChallengeMethodsSupported, []string{"S256"}) {
		t.Errorf("authorization server %+v", as)
	}
	if len(ch.Fetches) != 2 || ch.Fetches[0].Outcome != OutcomeFound || ch.Fetches[0].HTTPStatus != 200 ||
		ch.Fetches[1].Purpose != PurposeServerMetadata || ch.Fetches[1].Source != "rfc8414" {
		t.Errorf("fetches %+v", ch.Fetches)
	}
	if len(ch.Hosts) != 2 || ch.Hosts[0].Host != "mcp.lab.test" || ch.Hosts[1].Host != "auth.lab.test" || !ch.Hosts[1].Trusted ||
		!slices.Equal(ch.Hosts[1].Roles, []string{RoleAuthorizationServer, RoleAuthorizationEndpoint, RoleTokenEndpoint, RoleRegistrationEndpoint}) {
		t.Errorf("hosts %+v", ch.Hosts)
	}
	if !slices.Equal(ch.Hosts[0].Roles, []string{RoleEndpoint, RoleResourceMetadata}) {
		t.Errorf("endpoint roles %v", ch.Hosts[0].Roles)
	}
}

// Each broken link gives its code.
func TestAuthChainBrokenLinks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(l *authLab)
		want   []string // chain codes besides mcp_auth_required
		msg    string   // in the first wanted finding's message
	}{
		{"no metadata anywhere", func(l *authLab) { l.challenge = `Bearer realm="mcp"`; l.prm = nil }, []string{probe.CodeAuthMetadataMissing}, "oauth-protected-resource"},
		{"no challenge and no metadata", func(l *authLab) { l.challenge = ""; l.prm = nil }, []string{probe.CodeAuthMetadataMissing}, "no usable"},
		{"challenge names a missing document", func(l *authLab) {
			l.challenge = `Bearer resource_metadata="` + l.mcpBase + `/nope"`
		}, []string{probe.CodeAuthMetadataMissing}, "HTTP 404"},
		{"metadata for another resource", func(l *authLab) { l.prm["resource"] = "https://other.lab.test/mcp" }, []string{probe.CodeAuthResourceMismatch}, "other.lab.test"},
		{"metadata for the origin at the endpoint's path", func(l *authLab) { l.prm["resource"] = l.mcpBase }, []string{probe.CodeAuthResourceMismatch}, "but agents use"},
		{"no authorization servers", func(l *authLab) { l.prm["authorization_servers"] = []string{} }, []string{probe.CodeAuthServersMissing}, "authorization_servers"},
		{"authorization servers missing", func(l *authLab) { delete(l.prm, "authorization_servers") }, []string{probe.CodeAuthServersMissing}, ""},
		{"metadata not JSON", func(l *authLab) { l.prmRaw = "<html>sign in</html>" }, []string{probe.CodeAuthMetadataMissing}, "not a JSON object"},
		{"metadata without resource", func(l *authLab) { delete(l.prm, "resource") }, []string{probe.CodeAuthMetadataMissing}, "no resource"},
		{"challenge redirects to plain http", func(l *authLab) {
			l.challenge = `Bearer resource_metadata="` + l.mcpBase + `/moved"`
			l.redirects["mcp.lab.test/moved"] = "http://mcp.lab.test/x"
		}, []string{probe.CodeAuthMetadataMissing}, "non-https"},
		{"server metadata missing", func(l *authLab) { l.asDoc = nil }, []string{probe.CodeAuthServerMetadata}, "openid-configuration"},
		{"server metadata not JSON", func(l *authLab) { l.asRaw = "<html>login</html>" }, []string{probe.CodeAuthServerMetadata}, "not a JSON object"},
		{"server metadata with a wrong type", func(l *authLab) { l.asDoc["code_challenge_methods_supported"] = "S256" }, []string{probe.CodeAuthServerMetadata}, "code_challenge_methods_supported"},
		{"issuer mismatch", func(l *authLab) { l.asDoc["issuer"] = "https://login.example.com" }, []string{probe.CodeAuthIssuerMismatch}, "login.example.com"},
		{"no issuer", func(l *authLab) { delete(l.asDoc, "issuer") }, []string{probe.CodeAuthIssuerMismatch}, "no issuer"},
		{"no PKCE", func(l *authLab) { delete(l.asDoc, "code_challenge_methods_supported") }, []string{probe.CodeAuthPKCEMissing}, "code_challenge_methods_supported"},
		{"PKCE plain only", func(l *authLab) { l.asDoc["code_challenge_methods_supported"] = []string{"plain"} }, []string{probe.CodeAuthPKCEMissing}, "plain"},
		{"no registration path", func(l *authLab) { delete(l.asDoc, "registration_endpoint") }, []string{probe.CodeAuthRegistrationMissing}, "registration_endpoint"},
		{"unknown scope", func(l *authLab) { l.asDoc["scopes_supported"] = []string{"mcp:read"} }, []string{probe.CodeAuthScopeUnknown}, "mcp:write"},
		{"challenge scope unknown", func(l *authLab) {
			l.challenge = `Bearer resource_metadata="` + l.mcpBase + l.prmPath + `", scope="admin"`
		}, []string{probe.CodeAuthScopeUnknown}, "admin"},
		{"no token endpoint", func(l *authLab) { delete(l.asDoc, "token_endpoint") }, []string{probe.CodeAuthServerMetadata}, "token_endpoint"},
		{"issuer not https", func(l *authLab) { l.prm["authorization_servers"] = []string{"http://auth.lab.test"} }, []string{probe.CodeAuthServerMetadata}, "not an https URL"},
		{"issuer does not resolve", func(l *authLab) { l.prm["authorization_servers"] = []string{"https://login.nowhere.example"} }, []string{probe.CodeAuthServerMetadata}, "dns_error"},
		{"expired AS certificate", func(l *authLab) {
			l.certs["auth.lab.test"] = l.pki.Leaf(testlab.LeafOpts{DNSNames: []string{"auth.lab.test"}, NotBefore: l.pki.Now.Add(-100 * 24 * time.Hour), NotAfter: l.pki.Now.Add(-2 * 24 * time.Hour)})
		}, []string{probe.CodeAuthServerTLS}, "expired"},
		{"AS certificate from an unknown CA", func(l *authLab) {
			l.certs["auth.lab.test"] = l.pki.Leaf(testlab.LeafOpts{DNSNames: []string{"auth.lab.test"}, Issuer: l.pki.UntrustedIntermediate})
		}, []string{probe.CodeAuthServerTLS}, "untrusted_root"},
		{"token endpoint on a host with the wrong name", func(l *authLab) {
			l.asDoc["token_endpoint"] = l.idpBase + "/token"
			l.certs["idp.lab.test"] = l.pki.Leaf(testlab.LeafOpts{DNSNames: []string{"other.lab.test"}})
		}, []string{probe.CodeAuthServerTLS}, "token_endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newAuthLab(t)
			l.set(tc.break_)
			r := l.run(t)
			got := slices.DeleteFunc(authCodes(r), func(c string) bool { return c == probe.CodeMCPAuthRequired })
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("codes %v, want %v; findings %v", got, want, r.Findings)
			}
			if f := finding(r, tc.want[0]); !strings.Contains(f.Message, tc.msg) {
				t.Errorf("%s message %q lacks %q", f.Code, f.Message, tc.msg)
			}
			if finding(r, probe.CodeMCPAuthRequired) == nil {
				t.Error("mcp_auth_required missing")
			}
			if sev := probe.Codes[tc.want[0]].Severity; sev == probe.SeverityCritical && r.Status != probe.StatusCritical {
				t.Errorf("status %s with a critical chain finding", r.Status)
			}
		})
	}
}

// Tolerated differences and other discovery routes give no finding.
func TestAuthChainAcceptable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(l *authLab)
		check func(t *testing.T, l *authLab, r Result)
	}{
		{"trailing slash and case in the resource", func(l *authLab) {
			l.prm["resource"] = strings.Replace(l.endpoint, "https://mcp.lab.test", "HTTPS://MCP.Lab.Test", 1) + "/"
		}, nil},
		{"path-inserted metadata without resource_metadata", func(l *authLab) { l.challenge = `Bearer realm="mcp"` }, func(t *testing.T, l *authLab, r Result) {
			if p := r.AuthChain.ProtectedResource; p.Source != "path_inserted" {
				t.Errorf("source %q", p.Source)
			}
		}},
		{"root metadata naming the origin", func(l *authLab) {
			l.challenge, l.prmPath, l.prm["resource"] = `Bearer realm="mcp"`, "/.well-known/oauth-protected-resource", l.mcpBase
		}, func(t *testing.T, l *authLab, r Result) {
			p := r.AuthChain.ProtectedResource
			if p.Source != "root" || len(r.AuthChain.Fetches) != 3 || r.AuthChain.Fetches[0].Outcome != OutcomeNotFound {
				t.Errorf("protected resource %+v, fetches %+v", p, r.AuthChain.Fetches)
			}
		}},
		{"OpenID discovery only", func(l *authLab) { l.asPath = "/.well-known/openid-configuration" }, func(t *testing.T, l *authLab, r Result) {
			as := r.AuthChain.AuthorizationServers[0]
			if !strings.HasSuffix(as.MetadataURL, "/.well-known/openid-configuration") {
				t.Errorf("metadata url %q", as.MetadataURL)
			}
		}},
		{"issuer with a path", func(l *authLab) {
			l.prm["authorization_servers"] = []string{l.asBase + "/tenant1"}
			l.asDoc["issuer"] = l.asBase + "/tenant1"
			l.asPath = "/tenant1/.well-known/openid-configuration"
		}, func(t *testing.T, l *authLab, r Result) {
			var sources []string
			for _, f := range r.AuthChain.Fetches[1:] {
				sources = append(sources, f.Source+" "+f.Outcome)
			}
			if !slices.Equal(sources, []string{"rfc8414 not_found", "openid_path_inserted not_found", "openid found"}) {
				t.Errorf("fetches %v", sources)
			}
		}},
		{"client ID metadata documents instead of registration", func(l *authLab) {
			delete(l.asDoc, "registration_endpoint")
			l.asDoc["client_id_metadata_document_supported"] = true
		}, nil},
		{"AS without scopes_supported", func(l *authLab) { delete(l.asDoc, "scopes_supported") }, nil},
		{"metadata behind a redirect to another host", func(l *authLab) {
			l.challenge = `Bearer resource_metadata="` + l.idpBase + `/moved"`
			l.redirects["idp.lab.test/moved"] = l.mcpBase + l.prmPath
		}, func(t *testing.T, l *authLab, r Result) {
			f := r.AuthChain.Fetches[0]
			if f.FinalURL != l.mcpBase+l.prmPath || f.Outcome != OutcomeFound || len(r.AuthChain.Hosts) != 3 {
				t.Errorf("fetch %+v hosts %+v", f, r.AuthChain.Hosts)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newAuthLab(t)
			l.set(tc.mod)
			r := l.run(t)
			if got := authCodes(r); !slices.Equal(got, []string{probe.CodeMCPAuthRequired}) {
				t.Fatalf("codes %v; findings %v; chain %+v", got, r.Findings, r.AuthChain)
			}
			if tc.check != nil {
				tc.check(t, l, r)
			}
		})
	}
}

// The chain's requests dial through the outbound policy: an issuer at the
// cloud metadata address is refused before any packet.
func TestAuthChainPolicy(t *testing.T) {
	l := newAuthLab(t)
	l.set(func(l *authLab) { l.prm["authorization_servers"] = []string{"https://169.254.169.254/"} })
	var dials dialLog
	opts := l.opts()
	opts.Probe.Control = dials.control
	r, err := Run(t.Context(), l.endpoint, opts)
	if err != nil {
		t.Fatal(err)
	}
	f := finding(r, probe.CodeAuthServerMetadata)
	if f == nil || !strings.Contains(f.Message, probe.CodeTargetBlocked) {
		t.Fatalf("findings %v", r.Findings)
	}
	for _, a := range dials.addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("dialled %s", a)
		}
	}
	if h := r.AuthChain.Hosts[1]; h.Host != "169.254.169.254" || h.Reachable || h.Findings[0].Code != probe.CodeTargetBlocked {
		t.Errorf("host %+v", h)
	}
}

// A metadata document is read up to 256 KiB; redirects are followed only to
// https and a few times.
func TestAuthChainBounds(t *testing.T) {
	l := newAuthLab(t)
	l.set(func(l *authLab) {
		l.prm["resource_name"] = strings.Repeat("x", 300<<10)
	})
	r := l.run(t)
	if f := finding(r, probe.CodeAuthMetadataMissing); f == nil || !strings.Contains(f.Message, "exceeds 256 KiB") {
		t.Errorf("oversized: %v", r.Findings)
	}
	u, _ := url.Parse(l.endpoint)
	if got := canonicalURI(u); got != l.endpoint {
		t.Errorf("canonical %q", got)
	}
}
