package mcpcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/probe"
)

// rpcMessage is any JSON-RPC 2.0 message; which fields are set tells its kind.
type rpcMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// isResponseTo: a valid JSON-RPC 2.0 response carrying id.
func (m *rpcMessage) isResponseTo(id int) bool {
	if m.JSONRPC != "2.0" || m.Method != "" || (m.Result == nil && m.Error == nil) {
		return false
	}
	return idEquals(m.ID, id)
}

func idEquals(raw json.RawMessage, id int) bool {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String() == fmt.Sprint(id)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s == fmt.Sprint(id)
	}
	return false
}

type initializeResult struct {
	ProtocolVersion string `json:"protocolVersion"`
	ServerInfo      *struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"serverInfo"`
	Capabilities map[string]json.RawMessage `json:"capabilities"`
}

type discoverResult struct {
	SupportedVersions []string                   `json:"supportedVersions"`
	Capabilities      map[string]json.RawMessage `json:"capabilities"`
	Meta              map[string]json.RawMessage `json:"_meta"`
}

// exchange is one POST and what came back.
type exchange struct {
	resp        *http.Response
	status      int
	contentType string
	body        []byte      // what was read (bounded), for non-JSON-RPC answers
	msg         *rpcMessage // the JSON-RPC response to our id, if any
	notRPC      string      // why the body is not our JSON-RPC response
	elapsed     time.Duration
}

func (c *checker) headers(req *http.Request, method string) {
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("User-Agent", c.opts.ClientName+"/"+c.opts.ClientVersion)
	if method != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	if c.version != "" {
		req.Header.Set("Mcp-Protocol-Version", c.version)
	}
}

// post sends one JSON-RPC message and reads the answer: a JSON body, or an
// SSE stream read until the response with id arrives. id 0 means a
// notification (no response expected).
func (c *checker) post(body any, method string, id int, extra http.Header) (*exchange, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.url.String(), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	c.headers(req, method)
	for k, v := range extra {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	ex := &exchange{resp: resp, status: resp.StatusCode}
	ex.contentType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	defer func() {
		if ex.contentType == "text/event-stream" {
			resp.Body.Close() // a stream may stay open: never wait on it
		} else {
			drain(resp)
		}
	}()
	if id == 0 {
		ex.elapsed = time.Since(start)
		return ex, nil
	}
	// Bodies are redacted as read, before anything is parsed or clipped
	// from them.
	if ex.contentType == "text/event-stream" {
		ex.msg, ex.body, err = readSSE(resp.Body, id, c.secrets)
		switch {
		case err != nil && errors.Is(c.ctx.Err(), context.DeadlineExceeded):
			// A cancelled body can read as a plain EOF: say what happened.
			ex.notRPC = "no response on the event stream before the deadline"
		case err != nil:
			ex.notRPC = err.Error()
		}
	} else {
		ex.body, err = io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
		switch {
		case err != nil:
			ex.notRPC = "reading the body failed: " + err.Error()
		case len(ex.body) > maxBodyBytes:
			ex.notRPC = fmt.Sprintf("the body exceeds %d bytes", maxBodyBytes)
		default:
			ex.body = c.secrets.Bytes(ex.body)
			ex.msg, ex.notRPC = parseJSONRPC(ex.body, id)
		}
	}
	ex.elapsed = time.Since(start)
	return ex, nil
}

// parseJSONRPC decodes a body that should be one JSON-RPC response to id.
func parseJSONRPC(body []byte, id int) (*rpcMessage, string) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, "the body is empty"
	}
	if !json.Valid(trimmed) {
		return nil, "the body is not JSON"
	}
	var m rpcMessage
	if trimmed[0] == '[' {
		// A batch: accept our response inside it.
		var batch []rpcMessage
		if err := json.Unmarshal(trimmed, &batch); err == nil {
			for i := range batch {
				if batch[i].isResponseTo(id) {
					return &batch[i], ""
				}
			}
		}
		return nil, "the body is a JSON array without a JSON-RPC response to our request"
	}
	if err := json.Unmarshal(trimmed, &m); err != nil {
		return nil, "the body is JSON but not a JSON-RPC object"
	}
	if !m.isResponseTo(id) {
		return nil, "the body is JSON but not a JSON-RPC 2.0 response to our request"
	}
	return &m, ""
}

// readSSE reads server-sent events until the JSON-RPC response to id,
// skipping the server's notifications and requests, within maxBodyBytes
// and maxSSEEvents.
func readSSE(r io.Reader, id int, secrets *redact.Set) (*rpcMessage, []byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxBodyBytes), 4096)
	var data []string
	var seen bytes.Buffer
	events := 0
	for {
		line, err := br.ReadString('\n')
		line = secrets.String(line)
		if seen.Len() < 512 {
			seen.WriteString(line)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" && len(data) > 0 {
			events++
			var m rpcMessage
			if json.Unmarshal([]byte(strings.Join(data, "\n")), &m) == nil && m.isResponseTo(id) {
				return &m, seen.Bytes(), nil
			}
			if events >= maxSSEEvents {
				return nil, seen.Bytes(), fmt.Errorf("no response among the first %d events", maxSSEEvents)
			}
			data = data[:0]
		} else if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, seen.Bytes(), errors.New("the event stream ended without a JSON-RPC response to our request")
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, seen.Bytes(), errors.New("no response on the event stream before the deadline")
			}
			return nil, seen.Bytes(), fmt.Errorf("reading the event stream: %w", err)
		}
	}
}

// check runs the handshake and fills res.
// initialize posts initialize. A server that does not speak our version
// may name the ones it does (error data "supported"): it is retried once
// with its newest.
func (c *checker) initialize() (*exchange, error) {
	version := ProtocolVersion
	for attempt := 0; ; attempt++ {
		ex, err := c.post(map[string]any{
			"jsonrpc": "2.0", "id": 1, "method": "initialize",
			"params": map[string]any{
				"protocolVersion": version,
				"capabilities":    map[string]any{},
				"clientInfo":      map[string]any{"name": c.opts.ClientName, "version": c.opts.ClientVersion},
			},
		}, "initialize", 1, nil)
		if err != nil || attempt > 0 {
			return ex, err
		}
		alt := supportedFromError(ex.msg)
		if alt == "" || alt == version {
			return ex, nil
		}
		version = alt
	}
}

func (c *checker) check(res *Result) {
	res.TokenSent = c.token != ""
	ex, err := c.initialize()
	if err != nil {
		res.Error = "the MCP request failed: " + c.scrub(transportError(err))
		if c.opts.Probe.ClientCert == nil && hasCode(res.TLS.Findings, probe.CodeClientCertRequired) {
			// The server wants mTLS and we have no certificate: that is
			// client_cert_required (already reported), not a verdict on MCP.
			return
		}
		res.Findings = append(res.Findings, probe.NewFinding(probe.CodeNotMCP, res.Error))
		return
	}
	res.HTTPStatus = ex.status
	res.ContentType = ex.contentType
	res.LatencyMS = float64(ex.elapsed.Microseconds()) / 1000
	if ex.resp.Request != nil && ex.resp.Request.URL.String() != c.url.String() {
		res.RedirectTo = ex.resp.Request.URL.String()
	}

	switch {
	case ex.status == http.StatusUnauthorized || ex.status == http.StatusForbidden:
		if c.authChallenge(ex, res) {
			c.discover(res, false)
			if !c.opts.NoAuthChain {
				c.authChain(res)
			}
			return
		}
	case ex.status >= 300 && ex.status < 400:
		loc := ex.resp.Header.Get("Location")
		res.Findings = append(res.Findings, probe.NewFinding(probe.CodeNotMCP,
			fmt.Sprintf("the URL answers HTTP %d with a redirect to %q: POST requests do not survive it, so point agents at the final URL", ex.status, c.scrub(loc))))
		return
	}

	if ex.msg != nil && ex.msg.Result != nil {
		var ir initializeResult
		if json.Unmarshal(ex.msg.Result, &ir) == nil && ir.ProtocolVersion != "" {
			res.IsMCP = true
			res.ProtocolVersion = ir.ProtocolVersion
			if ir.ServerInfo != nil {
				res.ServerName, res.ServerVersion = ir.ServerInfo.Name, ir.ServerInfo.Version
			}
			c.session = ex.resp.Header.Get("Mcp-Session-Id")
			res.Session = c.session != ""
			c.version = ir.ProtocolVersion
			c.afterInitialize(res, ir)
			c.discover(res, true)
			return
		}
		ex.notRPC = "a JSON-RPC result that is not an MCP initialize result (no protocolVersion)"
	}

	// No initialize result. A 2026-07-28-only server rejects initialize
	// (with a JSON-RPC error, often over HTTP 404) but answers discover.
	if c.discover(res, false) {
		return
	}
	res.Findings = append(res.Findings, probe.NewFinding(probe.CodeNotMCP, c.notMCPMessage(ex)))
}

func hasCode(fs []probe.Finding, code string) bool {
	for _, f := range fs {
		if f.Code == code {
			return true
		}
	}
	return false
}

// supportedFromError returns the newest version a server names in an
// "unsupported protocol version" error, or "".
func supportedFromError(m *rpcMessage) string {
	if m == nil || m.Error == nil || len(m.Error.Data) == 0 {
		return ""
	}
	var d struct {
		Supported []string `json:"supported"`
	}
	if json.Unmarshal(m.Error.Data, &d) == nil && len(d.Supported) > 0 {
		return d.Supported[0]
	}
	return ""
}

// afterInitialize sends notifications/initialized and lists the tools.
func (c *checker) afterInitialize(res *Result, ir initializeResult) {
	if ex, err := c.post(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}, "notifications/initialized", 0, nil); err == nil &&
		ex.status != http.StatusAccepted && ex.status != http.StatusOK && ex.status != http.StatusNoContent {
		// Not fatal: note it where tools would be reported.
		res.ToolsError = fmt.Sprintf("notifications/initialized answered HTTP %d", ex.status)
	}
	c.listTools(res, ir.Capabilities, false)
}

// listTools reads every page of tools/list into res (count, digests,
// hash). modern sends the requests the 2026-07-28 way (no session, the
// version in headers and _meta). A server without the tools capability
// has an empty list, which is a valid observation.
func (c *checker) listTools(res *Result, caps map[string]json.RawMessage, modern bool) {
	if _, ok := caps["tools"]; !ok {
		res.ToolsError = "the server declares no tools capability"
		res.Tools, res.ToolsHash, _ = digestTools(nil)
		return
	}
	var all []json.RawMessage
	cursor := ""
	for page := 0; ; page++ {
		if page == maxToolPages {
			res.ToolsError = fmt.Sprintf("tools/list: more than %d pages", maxToolPages)
			return
		}
		tools, next, msg := c.toolsPage(cursor, 10+page, modern)
		if msg != "" {
			res.ToolsError = "tools/list: " + msg
			return
		}
		all = append(all, tools...)
		if len(all) > maxTools {
			res.ToolsError = fmt.Sprintf("tools/list: more than %d tools", maxTools)
			return
		}
		if next == "" {
			break
		}
		if next == cursor {
			res.ToolsError = "tools/list: the server repeats its nextCursor"
			return
		}
		cursor = next
	}
	digests, hash, err := digestTools(all)
	if err != nil {
		res.ToolsError = "tools/list: " + err.Error()
		return
	}
	n := len(all)
	res.ToolsListed, res.Tools, res.ToolsHash, res.ToolsError = &n, digests, hash, ""
}

// toolsPage fetches one page of tools/list; msg says why it failed.
func (c *checker) toolsPage(cursor string, id int, modern bool) (tools []json.RawMessage, next, msg string) {
	params := map[string]any{}
	if cursor != "" {
		params["cursor"] = cursor
	}
	body := map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params}
	var ex *exchange
	var err error
	if modern {
		params["_meta"] = c.modernMeta()
		ex, err = c.postModern(body, "tools/list", id)
	} else {
		ex, err = c.post(body, "tools/list", id, nil)
	}
	switch {
	case err != nil:
		return nil, "", "failed: " + c.scrub(transportError(err))
	case ex.msg == nil:
		return nil, "", fmt.Sprintf("HTTP %d, %s", ex.status, ex.notRPC)
	case ex.msg.Error != nil:
		return nil, "", fmt.Sprintf("JSON-RPC error %d: %s", ex.msg.Error.Code, clip(c.scrub(ex.msg.Error.Message), 200))
	}
	var tl struct {
		Tools      []json.RawMessage `json:"tools"`
		NextCursor string            `json:"nextCursor"`
	}
	if err := json.Unmarshal(ex.msg.Result, &tl); err != nil || tl.Tools == nil {
		return nil, "", "the result has no tools array"
	}
	return tl.Tools, tl.NextCursor, ""
}

// modernMeta is the per-request _meta that replaces initialize in
// 2026-07-28.
func (c *checker) modernMeta() map[string]any {
	return map[string]any{
		"io.modelcontextprotocol/protocolVersion":    ModernProtocolVersion,
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": c.opts.ClientName, "version": c.opts.ClientVersion},
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
	}
}

// postModern posts a 2026-07-28 request: no session, the version and the
// method in headers.
func (c *checker) postModern(body any, method string, id int) (*exchange, error) {
	h := http.Header{}
	h.Set("Mcp-Protocol-Version", ModernProtocolVersion)
	h.Set("Mcp-Method", method)
	saved, savedSession := c.version, c.session
	c.version, c.session = "", "" // the modern era has no sessions; headers set above
	defer func() { c.version, c.session = saved, savedSession }()
	return c.post(body, method, id, h)
}

// discover tries the 2026-07-28 server/discover request. It reports
// whether the server answered it; when haveInit is false and it did, it
// also fills identity and version from it and lists the tools the modern
// way.
func (c *checker) discover(res *Result, haveInit bool) bool {
	ex, err := c.postModern(map[string]any{
		"jsonrpc": "2.0", "id": 3, "method": "server/discover",
		"params": map[string]any{"_meta": c.modernMeta()},
	}, "server/discover", 3)
	d := &DiscoverInfo{}
	res.Discover = d
	switch {
	case err != nil:
		d.Error = c.scrub(transportError(err))
		return false
	case ex.msg == nil:
		d.Error = fmt.Sprintf("HTTP %d, %s", ex.status, ex.notRPC)
		return false
	case ex.msg.Error != nil:
		d.Error = fmt.Sprintf("JSON-RPC error %d: %s", ex.msg.Error.Code, clip(c.scrub(ex.msg.Error.Message), 200))
		return false
	}
	var dr discoverResult
	if json.Unmarshal(ex.msg.Result, &dr) != nil || len(dr.SupportedVersions) == 0 {
		d.Error = "the result has no supportedVersions"
		return false
	}
	d.Offered = true
	d.SupportedVersions = dr.SupportedVersions
	if !haveInit && !res.IsMCP {
		c.fromDiscover(res, ex, dr)
	}
	return true
}

// fromDiscover fills a Result from server/discover alone (a server without
// initialize) and lists its tools.
func (c *checker) fromDiscover(res *Result, ex *exchange, dr discoverResult) {
	res.IsMCP = true
	res.ProtocolVersion = dr.SupportedVersions[0]
	if res.HTTPStatus == 0 || res.HTTPStatus >= 400 {
		res.HTTPStatus = ex.status
		res.ContentType = ex.contentType
		res.LatencyMS = float64(ex.elapsed.Microseconds()) / 1000
	}
	var si struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if raw, ok := dr.Meta["io.modelcontextprotocol/serverInfo"]; ok && json.Unmarshal(raw, &si) == nil {
		res.ServerName, res.ServerVersion = si.Name, si.Version
	}
	if res.Auth == nil {
		c.listTools(res, dr.Capabilities, true)
	}
}

// authChallenge handles 401/403. It reports whether this was an
// authorization challenge (and so not a not_mcp verdict).
func (c *checker) authChallenge(ex *exchange, res *Result) bool {
	hdr := ex.resp.Header.Values("WWW-Authenticate")
	ai := parseChallenge(hdr)
	if ex.status == http.StatusForbidden && (ai == nil || ai.Error == "") {
		return false // a plain 403 (WAF, Origin or Host check) is not an OAuth challenge
	}
	if ai == nil {
		ai = &AuthInfo{}
	}
	res.Auth = ai
	msg := fmt.Sprintf("the server answers HTTP %d", ex.status)
	if ai.Scheme != "" {
		msg += " with a " + ai.Scheme + " challenge"
	} else {
		msg += " without a WWW-Authenticate challenge (MCP clients cannot discover how to authorize)"
	}
	if ai.Error != "" {
		msg += fmt.Sprintf(" (error=%s)", ai.Error)
	}
	switch {
	case res.TokenSent:
		msg += "; the token given was rejected"
	case c.opts.Token != "":
		msg += "; the token was not sent because the certificate did not verify"
	}
	if ai.ResourceMetadata != "" {
		msg += "; protected-resource metadata: " + ai.ResourceMetadata
	}
	res.Findings = append(res.Findings, probe.NewFinding(probe.CodeMCPAuthRequired, c.scrub(msg)))
	return true
}

// parseChallenge reads the Bearer challenge (RFC 6750, RFC 9728
// resource_metadata) from WWW-Authenticate values; the first challenge when
// none is Bearer. nil when there is none.
func parseChallenge(values []string) *AuthInfo {
	var first *AuthInfo
	for _, v := range values {
		for _, ch := range splitChallenges(v) {
			ai := &AuthInfo{Scheme: ch.scheme}
			ai.Realm = ch.params["realm"]
			ai.Scope = ch.params["scope"]
			ai.Error = ch.params["error"]
			ai.ResourceMetadata = ch.params["resource_metadata"]
			if strings.EqualFold(ch.scheme, "Bearer") {
				ai.Scheme = "Bearer"
				return ai
			}
			if first == nil {
				first = ai
			}
		}
	}
	return first
}

type challenge struct {
	scheme string
	params map[string]string
}

// splitChallenges parses `Scheme k=v, k="v", Scheme2 ...` (RFC 9110 §11.6.1),
// tolerant of what servers actually send, bounded by the header size.
func splitChallenges(s string) []challenge {
	var out []challenge
	i := 0
	next := func() string { // a token
		for i < len(s) && (s[i] == ' ' || s[i] == ',') {
			i++
		}
		j := i
		for i < len(s) && s[i] != ' ' && s[i] != ',' && s[i] != '=' {
			i++
		}
		return s[j:i]
	}
	for i < len(s) && len(out) < 8 {
		tok := next()
		if tok == "" {
			break
		}
		if i < len(s) && s[i] == '=' && len(out) > 0 {
			// k=v of the current challenge
			i++
			var val string
			if i < len(s) && s[i] == '"' {
				i++
				var b strings.Builder
				for i < len(s) && s[i] != '"' {
					if s[i] == '\\' && i+1 < len(s) {
						i++
					}
					b.WriteByte(s[i])
					i++
				}
				i++
				val = b.String()
			} else {
				j := i
				for i < len(s) && s[i] != ',' && s[i] != ' ' {
					i++
				}
				val = s[j:i]
			}
			out[len(out)-1].params[strings.ToLower(tok)] = val
			continue
		}
		if i < len(s) && s[i] == '=' {
			// token68 without a scheme: skip
			for i < len(s) && s[i] != ',' {
				i++
			}
			continue
		}
		out = append(out, challenge{scheme: tok, params: map[string]string{}})
	}
	return out
}

// notMCPMessage explains why the answer is not MCP, with the evidence.
func (c *checker) notMCPMessage(ex *exchange) string {
	var what string
	switch {
	case ex.msg != nil && ex.msg.Error != nil:
		what = fmt.Sprintf("it answers initialize with JSON-RPC error %d %q and does not answer server/discover",
			ex.msg.Error.Code, clip(ex.msg.Error.Message, 120))
	case ex.contentType == "text/html" || looksHTML(ex.body):
		what = "it answers with an HTML page"
		if t := htmlTitle(ex.body); t != "" {
			what += fmt.Sprintf(" (title %q)", t)
		}
	case ex.notRPC != "":
		what = ex.notRPC
		if ex.contentType != "" {
			what += " (" + ex.contentType + ")"
		}
		if s := snippet(ex.body); s != "" && !strings.Contains(ex.notRPC, "event stream") {
			what += fmt.Sprintf(": %q", s)
		}
	}
	msg := fmt.Sprintf("TLS works, but %s does not speak MCP: HTTP %d", c.url.String(), ex.status)
	if ex.status == http.StatusNotFound {
		msg += " Not Found (wrong path? MCP servers usually listen on /mcp)"
	}
	if what != "" {
		msg += "; " + what
	}
	return c.scrub(msg)
}

func looksHTML(b []byte) bool {
	t := bytes.ToLower(bytes.TrimSpace(b))
	return bytes.HasPrefix(t, []byte("<!doctype html")) || bytes.HasPrefix(t, []byte("<html"))
}

var titleRE = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

func htmlTitle(b []byte) string {
	m := titleRE.FindSubmatch(b)
	if m == nil {
		return ""
	}
	return clip(strings.Join(strings.Fields(string(m[1])), " "), 80)
}

// snippet is the start of a body, printable characters only.
func snippet(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(b[:min(len(b), 200)]))
	return clip(strings.Join(strings.Fields(s), " "), 100)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// scrub hides the secrets in a server-supplied string before it is clipped
// (a token cut in half by clip would escape the final redaction of the
// Result): a server may echo request headers in an error page.
func (c *checker) scrub(s string) string {
	return c.secrets.String(s)
}

// transportError words a failed HTTP exchange.
func transportError(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "no answer before the deadline"
	}
	return err.Error()
}

// drain discards a bounded rest of the body so the connection can be reused,
// then closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
