package mcpcheck

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// labResolver is the tests' /etc/hosts: every name under .test is
// 127.0.0.1; anything else does not resolve (a test never asks real DNS).
type labResolver struct{}

func (labResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if strings.HasSuffix(host, ".test") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// authLab is an MCP server that answers 401 (mcp.lab.test), its
// authorization server (auth.lab.test) and a third host (idp.lab.test),
// each a real HTTPS server on loopback with a lab certificate for its name.
// Tests break one link by changing a field before the check; handlers and
// certificates read the fields at request time.
type authLab struct {
	pki *testlab.PKI

	mu        sync.Mutex
	endpoint  string // https://mcp.lab.test:PORT/mcp
	mcpBase   string
	asBase    string // the issuer
	idpBase   string
	challenge string            // WWW-Authenticate of the 401; "" for none
	prmPath   string            // where the MCP host serves the metadata
	prm       map[string]any    // nil: 404
	prmRaw    string            // served instead of prm when set
	redirects map[string]string // host+path: Location of a 302
	asPath    string            // where the AS serves its metadata
	asDoc     map[string]any    // nil: 404
	asRaw     string            // served instead of asDoc when set
	certs     map[string]tls.Certificate
	hits      map[string]int // requests per host and path
}

func newAuthLab(t *testing.T) *authLab {
	t.Helper()
	l := &authLab{pki: testlab.NewPKI(t), hits: map[string]int{}, certs: map[string]tls.Certificate{}, redirects: map[string]string{}}
	for _, name := range []string{"mcp.lab.test", "auth.lab.test", "idp.lab.test"} {
		l.certs[name] = l.pki.Leaf(testlab.LeafOpts{DNSNames: []string{name}})
	}
	base := func(name string) string {
		cfg := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			c := l.certs[name]
			return &c, nil
		}}
		_, port, _ := net.SplitHostPort(testlab.ServeTLSHandler(t, cfg, l.handler(name)))
		return "https://" + name + ":" + port
	}
	l.mcpBase, l.asBase, l.idpBase = base("mcp.lab.test"), base("auth.lab.test"), base("idp.lab.test")
	l.endpoint = l.mcpBase + "/mcp"
	l.prmPath = "/.well-known/oauth-protected-resource/mcp"
	l.challenge = fmt.Sprintf(`Bearer resource_metadata="%s%s", scope="mcp:read"`, l.mcpBase, l.prmPath)
	l.prm = map[string]any{"resource": l.endpoint, "authorization_servers": []string{l.asBase}, "scopes_supported": []string{"mcp:read", "mcp:write"}}
	l.asPath = "/.well-known/oauth-authorization-server"
	l.asDoc = map[string]any{
		"issuer": l.asBase, "authorization_endpoint": l.asBase + "/authorize", "token_endpoint": l.asBase + "/token",
		"registration_endpoint": l.asBase + "/register", "code_challenge_methods_supported": []string{"S256"},
		"scopes_supported": []string{"mcp:read", "mcp:write", "openid"}, "response_types_supported": []string{"code"},
	}
	return l
}

func (l *authLab) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.hits[name+r.URL.Path]++
		switch loc, redirect := l.redirects[name+r.URL.Path]; {
		case redirect:
			http.Redirect(w, r, loc, http.StatusFound)
		case name == "mcp.lab.test" && r.URL.Path == "/mcp":
			if l.challenge != "" {
				w.Header().Set("WWW-Authenticate", l.challenge)
			}
			w.WriteHeader(http.StatusUnauthorized)
		case name == "mcp.lab.test" && r.URL.Path == l.prmPath && l.prmRaw != "":
			io.WriteString(w, l.prmRaw)
		case name == "mcp.lab.test" && r.URL.Path == l.prmPath && l.prm != nil:
			writeJSON(w, l.prm)
		case name == "auth.lab.test" && r.URL.Path == l.asPath && l.asRaw != "":
			io.WriteString(w, l.asRaw)
		case name == "auth.lab.test" && r.URL.Path == l.asPath && l.asDoc != nil:
			writeJSON(w, l.asDoc)
		default:
			http.NotFound(w, r)
		}
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (l *authLab) opts() Options {
	return Options{TimeoutMS: 15000, Probe: probe.Options{Now: l.pki.Now, Roots: l.pki.Roots(), Resolver: labResolver{}}}
}

func (l *authLab) run(t *testing.T) Result {
	t.Helper()
	r, err := Run(context.Background(), l.endpoint, l.opts())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (l *authLab) set(f func(l *authLab)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

// authCodes are the codes of the chain's findings (the endpoint's own TLS
// findings aside), sorted by severity as the Result is.
func authCodes(r Result) []string {
	var out []string
	for _, f := range r.Findings {
		if strings.HasPrefix(f.Code, "auth_") || f.Code == probe.CodeMCPAuthRequired || f.Severity != probe.SeverityInfo {
			out = append(out, f.Code)
		}
	}
	return out
}
