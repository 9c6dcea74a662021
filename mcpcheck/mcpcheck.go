// Package mcpcheck proves that a URL is a live MCP server: the TLS probe of
// package probe first, then an MCP handshake over streamable HTTP spoken with
// raw net/http — deliberately not with an MCP SDK, which would hide exactly
// what must be seen: a 404 HTML page, a 401 challenge, a body that is JSON but
// not JSON-RPC.
//
// The handshake is the 2025-11-25 one: POST initialize, POST
// notifications/initialized, POST tools/list (every page), then DELETE of
// the session. A 2026-07-28 server/discover is tried as well, and answers
// for servers that dropped initialize. Every body read is bounded, every
// step has the probe's deadline, and the optional bearer token is never
// logged, echoed or sent to a server whose certificate did not verify.
//
// When the endpoint answers 401, the authorization chain is followed
// (authchain.go): protected-resource metadata, authorization-server
// metadata, and a TLS probe of every host in the chain, each broken link a
// finding. The tool list is digested (tools.go) so that an MCP-level watch
// can tell what was added, removed or changed between two probes.
//
// Typical use (the check_mcp_endpoint tool):
//
//	res, err := mcpcheck.Run(ctx, "https://mcp.example.com/mcp", mcpcheck.Options{
//		Probe: probe.Options{Roots: roots},
//		Token: token, // optional
//	})
//	// err != nil only for bad input (a *probe.FieldError naming "url", "ip", "sni" or "timeout_ms")
package mcpcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/probe"
)

// Protocol versions spoken by the check.
const (
	ProtocolVersion       = "2025-11-25" // initialize
	ModernProtocolVersion = "2026-07-28" // server/discover
)

// Limits.
const (
	maxBodyBytes = 1 << 20 // any single response body
	maxSSEEvents = 256     // events read while looking for our response
)

// Options configure a check. The zero value is usable.
type Options struct {
	// Probe configures the TLS probe (roots, clock, client certificate,
	// outbound policy via Policy and Control, which the MCP requests obey
	// too). Its ClientCert is also presented on the MCP requests.
	Probe probe.Options
	// IP pins the address to dial, SNI overrides the server name, TimeoutMS
	// bounds the whole check (TLS probe and MCP handshake), default 10000,
	// max 60000: the target fields of DESIGN.md.
	IP        string
	SNI       string
	TimeoutMS int
	// Token is sent as "Authorization: Bearer <token>" — only when the
	// certificate verified. It never appears in the Result or in errors.
	Token string
	// Redact holds the operator's secrets (every configured token, client
	// key material); they are hidden in the Result, with Token, whatever
	// the server echoes. Nil hides Token alone.
	Redact *redact.Set
	// NoAuthChain skips following the authorization chain after a 401
	// (a caller that only wants to know whether the endpoint answers).
	NoAuthChain bool
	// ClientName and ClientVersion are announced in clientInfo; default
	// "tlswatch" and "dev".
	ClientName    string
	ClientVersion string
}

// Result is the structuredContent of check_mcp_endpoint.
type Result struct {
	URL string `json:"url"`
	// Status follows the Report rule: down when the TLS probe is not
	// reachable or not trusted, else the highest finding severity.
	Status   probe.Status    `json:"status"`
	Findings []probe.Finding `json:"findings"` // TLS findings and MCP findings, most severe first

	IsMCP           bool   `json:"is_mcp"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	ServerName      string `json:"server_name,omitempty"`
	ServerVersion   string `json:"server_version,omitempty"`
	// ToolsListed is the number of tools tools/list returned; nil when the
	// list could not be fetched (see ToolsError) or was not attempted.
	ToolsListed *int   `json:"tools_listed,omitempty"`
	ToolsError  string `json:"tools_error,omitempty"`
	// Tools are the listed tools' names and digests, sorted by name, and
	// ToolsHash the digest of them all (see Observation).
	Tools     []ToolDigest `json:"tools,omitempty"`
	ToolsHash string       `json:"tools_hash,omitempty"`
	// LatencyMS is the initialize round trip (connect, TLS, request,
	// complete response).
	LatencyMS  float64 `json:"latency_ms"`
	HTTPStatus int     `json:"http_status,omitempty"`
	// ContentType of the initialize response.
	ContentType string `json:"content_type,omitempty"`
	// Session: the server issued an Mcp-Session-Id (the value is not shown).
	Session  bool          `json:"session"`
	Discover *DiscoverInfo `json:"discover,omitempty"`
	Auth     *AuthInfo     `json:"auth,omitempty"`
	// AuthChain is the authorization chain followed after a 401: every
	// document fetched, what it said, and the TLS verdict of every host.
	AuthChain  *AuthChain `json:"auth_chain,omitempty"`
	TokenSent  bool       `json:"token_sent"`
	RedirectTo string     `json:"redirect_to,omitempty"`
	// Error says why no MCP exchange took place (transport failure).
	Error string `json:"error,omitempty"`
	// TLS is the full probe Report of the endpoint.
	TLS probe.Report `json:"tls"`
}

// DiscoverInfo is the outcome of the 2026-07-28 server/discover request.
type DiscoverInfo struct {
	Offered           bool     `json:"offered"`
	SupportedVersions []string `json:"supported_versions,omitempty"`
	Error             string   `json:"error,omitempty"`
}

// AuthInfo describes an authorization challenge (401/403).
type AuthInfo struct {
	Scheme           string `json:"scheme,omitempty"`
	Realm            string `json:"realm,omitempty"`
	Scope            string `json:"scope,omitempty"`
	Error            string `json:"error,omitempty"`
	ResourceMetadata string `json:"resource_metadata,omitempty"`
}

// Run checks one MCP endpoint URL. It returns an error only for bad input
// (a *probe.FieldError); every server-side problem is a finding.
func Run(ctx context.Context, rawURL string, opts Options) (Result, error) {
	t, mcpURL, err := parseURL(rawURL, opts)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	rep, err := probe.Run(ctx, t, opts.Probe)
	if err != nil {
		return Result{}, renameField(err)
	}
	return afterTLS(ctx, t, mcpURL, rep, opts), nil
}

// Watch is the MCP level of a probe of an MCP-level watch. Given the TLS
// Report rep of target t (probed by the caller with opts.Probe), it speaks
// MCP to https://host:port/path as Run does, without following the
// authorization chain (a diagnosis for check_mcp_endpoint, not the job of
// every scheduled probe), and returns rep with the MCP findings merged in,
// the status they give, and MCP set when the endpoint answered as an MCP
// server over a trusted connection. An initialize answered but a tool list
// that cannot be read is not_mcp too: agents could not use the server. ctx
// bounds the exchange.
func Watch(ctx context.Context, t probe.Target, rep probe.Report, opts Options) probe.Report {
	opts.NoAuthChain = true
	res := afterTLS(ctx, t, urlOf(t, ""), rep, opts)
	out := res.TLS
	out.Findings, out.Status = res.Findings, res.Status
	obs, ok := res.Observation()
	switch {
	case ok && out.Trusted:
		out.MCP = &obs
	case ok:
		// Untrusted: the probe is down already, and what an unverified
		// peer lists is no baseline for the next probe.
	case res.IsMCP:
		out.Findings = append(out.Findings, probe.NewFinding(probe.CodeNotMCP,
			fmt.Sprintf("%s answers initialize but its tool list cannot be read: %s", res.URL, res.ToolsError)))
		probe.SortFindings(out.Findings)
		out.Status = probe.StatusOf(out)
	}
	return out
}

// afterTLS runs the MCP exchange with an endpoint whose TLS probe gave rep
// and completes the Result.
func afterTLS(ctx context.Context, t probe.Target, mcpURL *url.URL, rep probe.Report, opts Options) Result {
	if opts.ClientName == "" {
		opts.ClientName = "tlswatch"
	}
	if opts.ClientVersion == "" {
		opts.ClientVersion = "dev"
	}
	res := Result{URL: mcpURL.String(), TLS: rep}
	secrets := opts.Redact.With(opts.Token)
	if rep.Reachable && rep.Target.IP != "" {
		c := newChecker(ctx, t, rep, mcpURL, opts, secrets)
		c.check(&res)
		c.close()
	}
	finish(&res)
	// Every string of the Result, the TLS Report's included, may carry what
	// a hostile server chose to echo.
	secrets.Walk(&res)
	return res
}

// parseURL validates the URL like any target (probe.ParseTarget) and keeps
// its path; a bare host means https://host/.
func parseURL(rawURL string, opts Options) (probe.Target, *url.URL, error) {
	s := strings.TrimSpace(rawURL)
	if s == "" {
		return probe.Target{}, nil, &probe.FieldError{Field: "url", Reason: "is required"}
	}
	if i := strings.Index(s, "://"); i >= 0 && !strings.EqualFold(s[:i], "https") {
		return probe.Target{}, nil, &probe.FieldError{Field: "url", Reason: fmt.Sprintf("scheme %q not supported: MCP over TLS needs https://", s[:i])}
	}
	t, err := probe.ParseTarget(s, opts.IP, opts.SNI, opts.TimeoutMS)
	if err != nil {
		return probe.Target{}, nil, renameField(err)
	}
	// Keep a query string if the URL had one (some gateways route on it).
	var query string
	if pu, err := url.Parse(s); err == nil {
		query = pu.RawQuery
	}
	return t, urlOf(t, query), nil
}

// urlOf is the MCP URL of a target: https, its host and port (443 left
// out), its path or "/".
func urlOf(t probe.Target, rawQuery string) *url.URL {
	path := t.Path
	if path == "" {
		path = "/"
	}
	u := &url.URL{Scheme: "https", Host: net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), Path: path, RawQuery: rawQuery}
	if t.Port == 443 {
		u.Host = t.Host
		if strings.Contains(t.Host, ":") {
			u.Host = "[" + t.Host + "]"
		}
	}
	return u
}

// renameField reports ParseTarget's "target" field as this tool's "url".
func renameField(err error) error {
	var fe *probe.FieldError
	if errors.As(err, &fe) && fe.Field == "target" {
		return &probe.FieldError{Field: "url", Reason: fe.Reason}
	}
	return err
}

// finish merges TLS findings in and applies the status rule.
func finish(res *Result) {
	all := append([]probe.Finding{}, res.TLS.Findings...)
	all = append(all, res.Findings...)
	probe.SortFindings(all)
	if all == nil {
		all = []probe.Finding{}
	}
	res.Findings = all
	r := res.TLS
	r.Findings = all
	res.Status = probe.StatusOf(r)
}

// checker holds the HTTP client pinned to the probed address.
type checker struct {
	ctx     context.Context
	client  *http.Client
	tr      *http.Transport
	url     *url.URL
	opts    Options
	token   string // empty unless the certificate verified
	secrets *redact.Set
	session string
	version string // negotiated protocol version, for later headers
}

func newChecker(ctx context.Context, t probe.Target, rep probe.Report, u *url.URL, opts Options, secrets *redact.Set) *checker {
	dialAddr := net.JoinHostPort(rep.Target.IP, strconv.Itoa(t.Port))
	sni := rep.Target.SNI
	tlsCfg := &tls.Config{
		ServerName: sni,
		RootCAs:    opts.Probe.Roots,
		// When the chain did not verify, the probe already said so (status
		// down); the MCP check still runs to tell whether the endpoint would
		// speak MCP, but without verification and without the token.
		InsecureSkipVerify: !rep.Trusted,
		MinVersion:         tls.VersionTLS12,
	}
	if rep.Trusted && tlsCfg.RootCAs == nil {
		tlsCfg.RootCAs, _ = probe.SystemRoots()
	}
	if cc := opts.Probe.ClientCert; cc != nil {
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cc, nil }
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: opts.Probe.DialControl()} // the outbound policy, re-checked per dial
	tr := &http.Transport{
		// Always the address the TLS probe examined, whatever the URL's
		// host resolves to now.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, dialAddr)
		},
		TLSClientConfig:        tlsCfg,
		ForceAttemptHTTP2:      true,
		MaxResponseHeaderBytes: 64 << 10,
		ResponseHeaderTimeout:  0, // the ctx deadline bounds it
		Proxy:                  nil,
	}
	c := &checker{ctx: ctx, tr: tr, url: u, opts: opts, secrets: secrets}
	if rep.Trusted {
		c.token = opts.Token
	}
	c.client = &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// 307/308 keep method and body, and MCP clients built on fetch
			// follow them; 301/302/303 turn the POST into a GET and break
			// every client. Never leave the host: the token goes along.
			if len(via) >= 3 || req.Response == nil || req.URL.Host != via[0].URL.Host || req.URL.Scheme != "https" ||
				(req.Response.StatusCode != http.StatusTemporaryRedirect && req.Response.StatusCode != http.StatusPermanentRedirect) {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return c
}

func (c *checker) close() {
	if c.session != "" {
		// Be polite: end the session we opened (best effort, short).
		ctx, cancel := context.WithTimeout(c.ctx, time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.url.String(), nil)
		if err == nil {
			c.headers(req, "")
			if resp, err := c.client.Do(req); err == nil {
				drain(resp)
			}
		}
		cancel()
	}
	c.tr.CloseIdleConnections()
}
