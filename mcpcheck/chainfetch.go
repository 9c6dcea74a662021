package mcpcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/tlswatch/tlswatch/probe"
)

// Bounds of the authorization chain.
const (
	maxMetadataBytes  = 256 << 10 // one metadata document
	maxChainRedirects = 3
	chainStepTimeout  = 5 * time.Second // one TLS probe or one fetch, within the check's deadline
	minStepTime       = 200 * time.Millisecond
)

// Roles of a host in the chain (HostTLS.Roles).
const (
	RoleEndpoint              = "mcp_endpoint"
	RoleResourceMetadata      = "protected_resource_metadata"
	RoleAuthorizationServer   = "authorization_server"
	RoleAuthorizationEndpoint = "authorization_endpoint"
	RoleTokenEndpoint         = "token_endpoint"
	RoleRegistrationEndpoint  = "registration_endpoint"
)

// Outcomes of a fetch (ChainFetch.Outcome).
const (
	OutcomeFound       = "found"       // HTTP 200 with a usable JSON document
	OutcomeNotFound    = "not_found"   // HTTP 404 or 410
	OutcomeHTTPError   = "http_error"  // any other status
	OutcomeInvalid     = "invalid"     // a bad URL, not a JSON object, too large, a required field missing
	OutcomeUnreachable = "unreachable" // no TLS connection or no HTTP answer
)

// HostTLS is the TLS verdict of one host of the chain, from the same probe
// (engine, trust store, outbound policy) as the endpoint's.
type HostTLS struct {
	Host          string          `json:"host"`
	Port          int             `json:"port"`
	IP            string          `json:"ip,omitempty"`
	Roles         []string        `json:"roles"`
	Status        probe.Status    `json:"status"`
	Reachable     bool            `json:"reachable"`
	Trusted       bool            `json:"trusted"`
	NotAfter      *time.Time      `json:"not_after,omitempty"`
	DaysRemaining *int            `json:"days_remaining,omitempty"`
	Findings      []probe.Finding `json:"findings"`
}

// ChainFetch is one document requested while following the chain.
type ChainFetch struct {
	Purpose    string `json:"purpose"` // protected_resource_metadata or authorization_server_metadata
	Source     string `json:"source"`  // which discovery rule gave the URL
	URL        string `json:"url"`
	FinalURL   string `json:"final_url,omitempty"` // after redirects
	HTTPStatus int    `json:"http_status,omitempty"`
	Outcome    string `json:"outcome"`
	Detail     string `json:"detail,omitempty"`
}

// chainHost is a host of the chain with what dialling it needs.
type chainHost struct {
	HostTLS
	sni     string
	downMsg string // why it is not reachable
}

func (h *chainHost) addRole(role string) {
	for _, r := range h.Roles {
		if r == role {
			return
		}
	}
	h.Roles = append(h.Roles, role)
}

// hostKey is how the chain names a host: lower-case ASCII host and port,
// as http.Transport passes it to the dialer (it converts an IDN).
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	host := strings.ToLower(u.Hostname())
	if a, err := idna.Lookup.ToASCII(host); err == nil {
		host = a
	}
	return net.JoinHostPort(host, port)
}

// remaining is the time a chain step may take: chainStepTimeout, less when
// the check's deadline is nearer; 0 when too little is left to try.
func (r *chainRun) remaining() time.Duration {
	d := chainStepTimeout
	if dl, ok := r.ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	if d < minStepTime {
		return 0
	}
	return d
}

// seedEndpoint registers the endpoint's host with the probe already made.
func (r *chainRun) seedEndpoint(rep probe.Report) {
	h := &chainHost{sni: rep.Target.SNI}
	fillHost(h, rep)
	h.Roles = []string{RoleEndpoint}
	r.hosts[hostKey(r.c.url)] = h
	r.order = append(r.order, h)
}

// probeHost returns the host of u, probing its TLS the first time (the
// outbound policy decides there, as for any probe). Later fetches dial the
// very address the probe examined.
func (r *chainRun) probeHost(u *url.URL, role string) *chainHost {
	key := hostKey(u)
	if h := r.hosts[key]; h != nil {
		h.addRole(role)
		return h
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		port = probe.DefaultPort
	}
	h := &chainHost{HostTLS: HostTLS{Host: strings.ToLower(u.Hostname()), Port: port, Roles: []string{role}, Status: probe.StatusDown, Findings: []probe.Finding{}}}
	r.hosts[key] = h
	r.order = append(r.order, h)
	d := r.remaining()
	if d == 0 {
		h.downMsg = "not probed: the check's deadline came first"
		return h
	}
	t, err := probe.ParseTarget("https://"+u.Host, "", "", int(d.Milliseconds()))
	if err != nil {
		h.downMsg = err.Error()
		return h
	}
	opts := r.c.opts.Probe
	// Same trust and policy; no client certificate (an authorization
	// server has no business seeing the agent's mTLS identity), one
	// address (the one the fetches will dial), no costly extras.
	opts.SingleAddress, opts.Deep, opts.ClientCert, opts.ClientCertName = true, false, nil, ""
	rep, err := probe.Run(r.ctx, t, opts)
	if err != nil {
		h.downMsg = err.Error()
		return h
	}
	h.sni = rep.Target.SNI
	fillHost(h, rep)
	return h
}

func fillHost(h *chainHost, rep probe.Report) {
	h.Host, h.Port, h.IP = rep.Target.Host, rep.Target.Port, rep.Target.IP
	h.Status, h.Reachable, h.Trusted = rep.Status, rep.Reachable, rep.Trusted
	h.Findings = append([]probe.Finding{}, rep.Findings...)
	if rep.Leaf != nil {
		na, days := rep.Leaf.NotAfter, rep.Leaf.DaysRemaining
		h.NotAfter, h.DaysRemaining = &na, &days
	}
	if !rep.Reachable {
		h.downMsg = "no TLS connection"
		if len(rep.Findings) > 0 {
			h.downMsg = rep.Findings[0].Code + ": " + rep.Findings[0].Message
		}
	}
	if h.sni == "" {
		h.sni = h.Host // an IP literal: Go sends no SNI and checks the IP SANs
	}
}

// newChainClient is the HTTP client of the metadata fetches: TLS to the
// address each host's probe examined, through the outbound policy, no
// proxy, no idle connections, redirects limited, https only, and each new
// host probed before it is dialled.
func (r *chainRun) newChainClient() *http.Client {
	roots := r.c.opts.Probe.Roots
	if roots == nil {
		roots, _ = probe.SystemRoots()
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialTLSContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return r.dialHost(ctx, addr, roots) },
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > maxChainRedirects {
			return fmt.Errorf("stopped after %d redirects", maxChainRedirects)
		}
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirected to a non-https URL (%s)", req.URL.Scheme)
		}
		if h := r.probeHost(req.URL, r.role); !h.Reachable {
			return fmt.Errorf("redirected to %s, which is unreachable (%s)", req.URL.Host, h.downMsg)
		}
		return nil
	}}
}

func (r *chainRun) dialHost(ctx context.Context, addr string, roots *x509.CertPool) (net.Conn, error) {
	h := r.hosts[strings.ToLower(addr)]
	if h == nil || h.IP == "" {
		return nil, fmt.Errorf("%s was not probed", addr)
	}
	_, port, _ := net.SplitHostPort(addr)
	d := net.Dialer{Timeout: chainStepTimeout, Control: r.c.opts.Probe.DialControl()}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(h.IP, port))
	if err != nil {
		return nil, err
	}
	// An untrusted host was already reported by its probe; the document is
	// still read so the rest of the chain can be diagnosed (nothing secret
	// is sent on these requests).
	tc := tls.Client(conn, &tls.Config{ServerName: h.sni, RootCAs: roots, InsecureSkipVerify: !h.Trusted,
		MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// fetch GETs one metadata document, bounded in size and time, and records
// the attempt. The body is returned only for a found JSON object, with the
// secrets already hidden.
func (r *chainRun) fetch(purpose, source, raw, role string) (*ChainFetch, []byte) {
	f := &ChainFetch{Purpose: purpose, Source: source, URL: clip(raw, maxChainString)}
	r.fetches = append(r.fetches, f)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		f.Outcome, f.Detail = OutcomeInvalid, "not an https URL"
		return f, nil
	}
	if h := r.probeHost(u, role); !h.Reachable {
		f.Outcome, f.Detail = OutcomeUnreachable, h.downMsg
		return f, nil
	}
	d := r.remaining()
	if d == 0 {
		f.Outcome, f.Detail = OutcomeUnreachable, "not fetched: the check's deadline came first"
		return f, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		f.Outcome, f.Detail = OutcomeInvalid, err.Error()
		return f, nil
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", r.c.opts.ClientName+"/"+r.c.opts.ClientVersion)
	r.role = role
	resp, err := r.client.Do(req)
	if err != nil {
		f.Outcome, f.Detail = OutcomeUnreachable, r.c.scrub(fetchError(err))
		return f, nil
	}
	defer resp.Body.Close()
	return f, r.readDocument(f, resp)
}

// readDocument classifies a metadata response and returns the body of a
// JSON object.
func (r *chainRun) readDocument(f *ChainFetch, resp *http.Response) []byte {
	f.HTTPStatus = resp.StatusCode
	if final := resp.Request.URL.String(); final != f.URL {
		f.FinalURL = clip(final, maxChainString)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		f.Outcome = OutcomeNotFound
		return nil
	case resp.StatusCode != http.StatusOK:
		f.Outcome, f.Detail = OutcomeHTTPError, fmt.Sprintf("HTTP %d", resp.StatusCode)
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	switch {
	case err != nil:
		f.Outcome, f.Detail = OutcomeUnreachable, "reading the body: "+r.c.scrub(fetchError(err))
		return nil
	case len(body) > maxMetadataBytes:
		f.Outcome, f.Detail = OutcomeInvalid, fmt.Sprintf("the document exceeds %d KiB", maxMetadataBytes>>10)
		return nil
	}
	body = r.c.secrets.Bytes(body)
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		f.Outcome, f.Detail = OutcomeInvalid, fmt.Sprintf("not a JSON object (Content-Type %q): %q", ct, snippet(body))
		return nil
	}
	f.Outcome = OutcomeFound
	return body
}

// fetchError words a failed fetch without Go's "Get \"url\": " prefix.
func fetchError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return transportError(err)
}
