// Package e2e drives the built tlswatch binary with mcp-go's client over real
// stdio and over streamable HTTP, against loopback TLS servers of the test
// lab. Nothing here reaches beyond 127.0.0.1.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// Protocol eras mcp-go speaks.
const (
	legacyVersion = "2025-11-25"
	modernVersion = "2026-07-28"
)

var (
	binary     string
	buildFlags []string
)

// TestMain builds the real binary once; every test runs it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tlswatch-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tlswatch")
	args := append(append([]string{"build"}, buildFlags...), "-o", binary, "github.com/tlswatch/tlswatch/cmd/tlswatch")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building tlswatch:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lab is a PKI with its root written to a --ca-file, a valid server and a
// rotating server whose certificate expires in 5 days.
type lab struct {
	pki      *testlab.PKI
	caFile   string
	valid    string // host:port target of a valid server
	validIP  string
	rotating *testlab.Rotating
	dir      string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	p := testlab.NewPKI(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(ca, []byte(p.Root.PEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	validAddr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{p.Leaf(testlab.LeafOpts{})}})
	rot := testlab.ServeRotating(t, p.Leaf(testlab.LeafOpts{NotAfter: p.Now.Add(5 * 24 * time.Hour)}))
	return &lab{pki: p, caFile: ca, valid: hostTarget(validAddr), validIP: "127.0.0.1", rotating: rot, dir: dir}
}

// hostTarget turns 127.0.0.1:port into tlswatch.test:port (dialled with ip).
func hostTarget(addr string) string {
	_, port, _ := strings.Cut(addr, ":")
	return testlab.DefaultHost + ":" + port
}

func (l *lab) serveArgs(extra ...string) []string {
	return append([]string{"serve", "--db", filepath.Join(l.dir, "tlswatch.db"), "--ca-file", l.caFile}, extra...)
}

// --- clients ---

func initialize(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "tlswatch-e2e", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize: %v", err)
	}
}

// stdioClient starts `tlswatch serve` as a child on stdio.
func stdioClient(t *testing.T, version string, args []string) *client.Client {
	t.Helper()
	stderr := &syncBuffer{}
	tr := transport.NewStdioWithOptions(binary, nil, args, transport.WithCommandStderrWriter(stderr))
	var opts []client.ClientOption
	if version != "" {
		opts = append(opts, client.WithProtocolVersion(version))
	}
	c := client.NewClient(tr, opts...)
	// Start launches the child and wires notifications to OnNotification.
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start stdio: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	initialize(t, c)
	return c
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// httpServer starts `tlswatch serve --http 127.0.0.1:0 ...` and returns the
// MCP URL it logs. The server is stopped with SIGINT on cleanup.
func httpServer(t *testing.T, args []string, env ...string) string {
	t.Helper()
	url, _ := startHTTPServer(t, args, env...)
	return url
}

// startHTTPServer is httpServer that also returns stop: SIGINT, then wait
// for a clean exit; it fails the test when serve takes over 15s or exits
// non-zero. stop is idempotent and also runs on cleanup.
func startHTTPServer(t *testing.T, args []string, env ...string) (string, func()) {
	t.Helper()
	return startHTTPServerOn(t, "127.0.0.1:0", args, env...)
}

// startHTTPServerOn is startHTTPServer listening on addr (a restart on the
// same port).
func startHTTPServerOn(t *testing.T, addr string, args []string, env ...string) (string, func()) {
	t.Helper()
	args = append(args, "--http", addr)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	var logMu sync.Mutex
	var logs strings.Builder
	re := regexp.MustCompile(`url=(http://\S+/mcp)`)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logs.WriteString(line + "\n")
			logMu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				select {
				case urlc <- m[1]:
				default:
				}
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve --http did not exit cleanly on SIGINT: %v", err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Error("serve --http did not stop within 15s of SIGINT")
			}
			pw.Close()
			if t.Failed() {
				logMu.Lock()
				t.Logf("server stderr:\n%s", logs.String())
				logMu.Unlock()
			}
		})
	}
	t.Cleanup(stop)
	select {
	case u := <-urlc:
		return u, stop
	case <-time.After(20 * time.Second):
		t.Fatal("serve --http did not log its URL within 20s")
		return "", stop
	}
}

func httpClient(t *testing.T, url, version string, opts ...transport.StreamableHTTPCOption) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var copts []client.ClientOption
	if version != "" {
		copts = append(copts, client.WithProtocolVersion(version))
	}
	c := client.NewClient(tr, copts...)
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start http client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c)
	return c
}

// --- calls ---

func call(t *testing.T, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	if !res.IsError {
		validateOutput(t, c, name, res)
	}
	return res
}

// schemas caches each client's compiled output schemas, from tools/list.
var schemas sync.Map // *client.Client -> map[string]*jsonschema.Schema

// validateOutput checks structuredContent against the tool's outputSchema as
// served, the way the TypeScript SDK's client does (it rejects a mismatch).
func validateOutput(t *testing.T, c *client.Client, name string, res *mcp.CallToolResult) {
	t.Helper()
	v, ok := schemas.Load(c)
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		m := map[string]*jsonschema.Schema{}
		for _, tool := range list.Tools {
			raw, _ := json.Marshal(tool)
			var def struct {
				OutputSchema json.RawMessage `json:"outputSchema"`
			}
			_ = json.Unmarshal(raw, &def)
			if len(def.OutputSchema) == 0 {
				continue
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(def.OutputSchema))
			if err != nil {
				t.Fatalf("%s outputSchema: %v", tool.Name, err)
			}
			comp := jsonschema.NewCompiler()
			url := "mem:///" + tool.Name + ".json"
			if err := comp.AddResource(url, doc); err != nil {
				t.Fatal(err)
			}
			s, err := comp.Compile(url)
			if err != nil {
				t.Fatalf("%s outputSchema does not compile: %v", tool.Name, err)
			}
			m[tool.Name] = s
		}
		v, _ = schemas.LoadOrStore(c, m)
	}
	s := v.(map[string]*jsonschema.Schema)[name]
	if s == nil {
		t.Fatalf("%s has no outputSchema", name)
	}
	if res.StructuredContent == nil {
		t.Fatalf("%s: no structuredContent", name)
	}
	b, _ := json.Marshal(res.StructuredContent)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(inst); err != nil {
		t.Errorf("%s: structuredContent does not match outputSchema: %v", name, err)
	}
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func structured(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("structuredContent %s: %v", b, err)
	}
	return m
}

// exercise is the conversation every transport must hold: list tools, call
// both diagnosis tools, a bad argument answered with isError, then a valid
// call still answered.
func exercise(t *testing.T, c *client.Client, l *lab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tl, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	names := map[string]bool{}
	for _, tool := range tl.Tools {
		names[tool.Name] = true
	}
	for _, n := range []string{"check_tls", "inspect_chain", "watch_endpoint", "unwatch_endpoint", "list_watches", "list_expiring", "get_history", "scan_endpoints"} {
		if !names[n] {
			t.Errorf("tools/list lacks %s (has %v)", n, names)
		}
	}

	res := call(t, c, "check_tls", map[string]any{"target": l.valid, "ip": l.validIP, "timeout_ms": 10000})
	if res.IsError {
		t.Fatalf("check_tls: %s", text(res))
	}
	r := structured(t, res)
	if r["status"] != "ok" || r["trusted"] != true || r["reachable"] != true {
		t.Errorf("check_tls on a valid server: %s", text(res))
	}
	if !strings.HasPrefix(text(res), l.valid+" — status ok") {
		t.Errorf("check_tls summary: %q", text(res))
	}

	res = call(t, c, "inspect_chain", map[string]any{"target": l.valid, "ip": l.validIP, "include_pem": true})
	if res.IsError {
		t.Fatalf("inspect_chain: %s", text(res))
	}
	cr := structured(t, res)
	certs, _ := cr["certificates"].([]any)
	if len(certs) != 2 {
		t.Errorf("inspect_chain: %d certificates, want 2 (leaf, intermediate)", len(certs))
	} else if pem, _ := certs[0].(map[string]any)["pem"].(string); !strings.Contains(pem, "BEGIN CERTIFICATE") {
		t.Errorf("inspect_chain include_pem: leaf has no PEM")
	}

	res = call(t, c, "check_tls", map[string]any{"target": "tlswatch.test:70000"})
	if !res.IsError || !strings.HasPrefix(text(res), "target:") {
		t.Errorf("bad port: isError=%v %q", res.IsError, text(res))
	}
	res = call(t, c, "check_tls", map[string]any{"target": l.valid, "timeout_ms": 600000})
	if !res.IsError || !strings.HasPrefix(text(res), "timeout_ms:") {
		t.Errorf("bad timeout: isError=%v %q", res.IsError, text(res))
	}

	res = call(t, c, "check_tls", map[string]any{"target": l.valid, "ip": l.validIP})
	if res.IsError || structured(t, res)["status"] != "ok" {
		t.Errorf("valid call after bad ones: %s", text(res))
	}
}

func TestStdio(t *testing.T) {
	l := newLab(t)
	for _, v := range []string{legacyVersion, ""} {
		t.Run("version="+v, func(t *testing.T) {
			c := stdioClient(t, v, l.serveArgs())
			exercise(t, c, l)
		})
	}
}

func TestHTTP(t *testing.T) {
	l := newLab(t)
	url := httpServer(t, l.serveArgs())
	for _, v := range []string{legacyVersion, ""} {
		t.Run("version="+v, func(t *testing.T) {
			c := httpClient(t, url, v)
			exercise(t, c, l)
		})
	}
}

// post sends one raw JSON-RPC initialize to url with the given headers.
func post(t *testing.T, url string, headers map[string]string) *http.Response {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestHTTPOrigin(t *testing.T) {
	l := newLab(t)
	url := httpServer(t, l.serveArgs())
	for origin, want := range map[string]int{
		"https://evil.example":  http.StatusForbidden,
		"null":                  http.StatusForbidden,
		"http://localhost:6274": http.StatusOK,
		"http://127.0.0.1:3000": http.StatusOK,
		"":                      http.StatusOK,
	} {
		h := map[string]string{}
		if origin != "" {
			h["Origin"] = origin
		}
		if got := post(t, url, h).StatusCode; got != want {
			t.Errorf("Origin %q: status %d, want %d", origin, got, want)
		}
	}
}

func TestHTTPToken(t *testing.T) {
	l := newLab(t)
	const token = "s3cret-e2e-token"
	url := httpServer(t, l.serveArgs(), "TLSWATCH_TOKEN="+token)

	resp := post(t, url, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := post(t, url, map[string]string{"Authorization": "Bearer wrong"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	if resp := post(t, url, map[string]string{"Authorization": "Bearer " + token}); resp.StatusCode != http.StatusOK {
		t.Errorf("right token: %d", resp.StatusCode)
	}
	metricsURL := strings.TrimSuffix(url, "/mcp") + "/metrics"
	for auth, want := range map[string]int{"": http.StatusUnauthorized, "Bearer " + token: http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, metricsURL, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == http.StatusOK && !strings.Contains(string(body), "tlswatch_watches")) {
			t.Errorf("/metrics with %q: %d %.200s", auth, resp.StatusCode, body)
		}
	}
	c := httpClient(t, url, legacyVersion, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	if res := call(t, c, "check_tls", map[string]any{"target": l.valid, "ip": l.validIP}); res.IsError {
		t.Errorf("check_tls with token: %s", text(res))
	}
}
