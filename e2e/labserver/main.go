// Command labserver runs the tlswatch TLS lab (internal/testlab) as a
// standalone process for the npm-based end-to-end suites in e2e/.
//
// It generates a fresh PKI, starts one loopback server per scenario, writes
// the trusted root (and a few PEM files the tests paste into tools) to a
// directory, prints one JSON line describing everything on stdout, and runs
// until stdin reaches EOF or it gets SIGINT/SIGTERM. Nothing listens beyond
// 127.0.0.1.
//
//	labserver [-dir DIR] [-stdin=false]
//
// Output (one line):
//
//	{"ca_file": "/tmp/x/root.pem",
//	 "servers": {"valid": "127.0.0.1:40001", ...},
//	 "scenarios": {"valid": {"host": "tlswatch.test", "ip": "127.0.0.1",
//	                         "port": 40001, "target": "tlswatch.test:40001",
//	                         "not_after": "..."}, ...},
//	 "pem": {"valid_chain": "/tmp/x/valid-chain.pem", ...},
//	 "now": "..."}
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// labTB lets testlab's helpers, written for tests, run in a plain program:
// failures end the process, cleanups run at exit. The embedded interface is
// nil; only the methods below are ever called.
type labTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

func (*labTB) Helper()      {}
func (*labTB) Name() string { return "labserver" }
func (*labTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "labserver: "+format+"\n", args...)
	os.Exit(3)
}
func (t *labTB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }
func (t *labTB) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "labserver: "+format+"\n", args...)
}
func (t *labTB) Error(args ...any)             { t.Errorf("%s", fmt.Sprint(args...)) }
func (*labTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *labTB) Log(args ...any)               { t.Logf("%s", fmt.Sprint(args...)) }
func (*labTB) Failed() bool                    { return false }
func (*labTB) Skipped() bool                   { return false }
func (t *labTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}
func (t *labTB) runCleanups() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

type scenarioOut struct {
	Host     string `json:"host"`
	IP       string `json:"ip"`
	Port     int    `json:"port"`
	Addr     string `json:"addr"`
	Target   string `json:"target"`
	URL      string `json:"url,omitempty"`
	NotAfter string `json:"not_after,omitempty"`
	Note     string `json:"note,omitempty"`
}

type output struct {
	CAFile    string                 `json:"ca_file"`
	Dir       string                 `json:"dir"`
	Now       string                 `json:"now"`
	Servers   map[string]string      `json:"servers"`
	Scenarios map[string]scenarioOut `json:"scenarios"`
	PEM       map[string]string      `json:"pem"`
}

const day = 24 * time.Hour

func main() {
	dir := flag.String("dir", "", "directory for root.pem and the PEM files (default: a new temp dir, removed at exit)")
	watchStdin := flag.Bool("stdin", true, "exit when stdin reaches EOF")
	rotateEvery := flag.Duration("rotate-every", 2*time.Second, "how often the 'rotating' scenario gets a new certificate")
	flag.Parse()

	t := &labTB{}
	removeDir := false
	if *dir == "" {
		d, err := os.MkdirTemp("", "tlswatch-lab-")
		if err != nil {
			t.Fatalf("temp dir: %v", err)
		}
		*dir, removeDir = d, true
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		t.Fatalf("dir: %v", err)
	}
	l := &lab{t: t, dir: *dir, pki: testlab.NewPKI(t)}
	l.out = output{
		Dir:       *dir,
		Now:       l.pki.Now.UTC().Format(time.RFC3339),
		Servers:   map[string]string{},
		Scenarios: map[string]scenarioOut{},
		PEM:       map[string]string{},
	}
	l.out.CAFile = l.writePEM("root.pem", l.pki.Root.PEM())
	l.startScenarios()
	l.startRotating(*rotateEvery)
	l.startMCP()

	line, err := json.Marshal(l.out)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	// This test helper's stdout is its one-line contract with the e2e
	// harness (e2e/test/helpers.mjs); it is not an MCP server.
	fmt.Println(string(line))

	done := make(chan struct{}, 2)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sigs; done <- struct{}{} }()
	if *watchStdin {
		go func() { io.Copy(io.Discard, os.Stdin); done <- struct{}{} }()
	}
	<-done
	t.runCleanups()
	if removeDir {
		os.RemoveAll(*dir)
	}
}

// lab is the running lab and what it tells the harness.
type lab struct {
	t   *labTB
	dir string
	pki *testlab.PKI
	out output
}

func (l *lab) writePEM(name, text string) string {
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		l.t.Fatalf("write %s: %v", p, err)
	}
	return p
}

func (l *lab) add(name string, sc *testlab.Scenario, note string) {
	o := scenarioOut{Host: sc.Host, IP: sc.IP, Port: sc.Port, Addr: sc.Addr, Target: sc.Target, Note: note}
	if sc.Cert != nil && sc.Cert.Leaf != nil {
		o.NotAfter = sc.Cert.Leaf.NotAfter.UTC().Format(time.RFC3339)
	}
	l.out.Servers[name] = sc.Addr
	l.out.Scenarios[name] = o
}

// startScenarios starts testlab's stock scenarios under their names, and
// expiring_5d, and writes the PEM files.
func (l *lab) startScenarios() {
	for _, name := range []string{
		testlab.ScenarioValid,
		testlab.ScenarioIPSAN,
		testlab.ScenarioExpired,
		testlab.ScenarioWrongHost,
		testlab.ScenarioSelfSigned,
		testlab.ScenarioUntrustedRoot,
		testlab.ScenarioMissingIntermediate,
		testlab.ScenarioRefused,
		testlab.ScenarioNeverAnswers,
		testlab.ScenarioPlainHTTP,
	} {
		l.add(name, testlab.Start(l.t, l.pki, name), "")
	}
	// expiring_5d: trusted, 5 days and 12 hours left, so days_remaining is 5
	// for the next 12 hours whatever the probe's rounding.
	exp5 := l.pki.Leaf(testlab.LeafOpts{NotAfter: l.pki.Now.Add(5*day + 12*time.Hour)})
	l.add("expiring_5d", testlab.StartWith(l.t, l.pki, exp5, nil), "days_remaining 5, expiry_stage 7d")
	l.out.PEM["valid_chain"] = l.writePEM("valid-chain.pem", testlab.ChainPEM(l.pki.Leaf(testlab.LeafOpts{})))
	l.out.PEM["expired_leaf"] = l.writePEM("expired-leaf.pem", testlab.EncodePEM(
		l.pki.Leaf(testlab.LeafOpts{NotBefore: l.pki.Now.Add(-93 * day), NotAfter: l.pki.Now.Add(-3 * day)}).Leaf))
}

// startRotating: 5 days left, a new certificate (new fingerprint) every
// interval, for "certificate rotated" notifications.
func (l *lab) startRotating(every time.Duration) {
	newRotated := func() tls.Certificate {
		return l.pki.Leaf(testlab.LeafOpts{NotAfter: time.Now().Add(5*day + 12*time.Hour)})
	}
	rot := testlab.ServeRotating(l.t, newRotated())
	host, port, _ := net.SplitHostPort(rot.Addr)
	p, _ := strconv.Atoi(port)
	l.out.Servers["rotating"] = rot.Addr
	l.out.Scenarios["rotating"] = scenarioOut{Host: testlab.DefaultHost, IP: host, Port: p, Addr: rot.Addr,
		Target: net.JoinHostPort(testlab.DefaultHost, port), Note: "new leaf every " + every.String()}
	go func() {
		for range time.Tick(every) {
			rot.Rotate(newRotated())
		}
	}()
}

// startMCP: a trusted HTTPS server whose /mcp answers MCP initialize (a
// minimal streamable-HTTP responder) and whose /private/mcp answers 401
// with a Bearer challenge; every other path is plain "ok".
func (l *lab) startMCP() {
	mcpCert := l.pki.Leaf(testlab.LeafOpts{})
	mcpAddr := testlab.ServeTLSHandler(l.t, &tls.Config{Certificates: []tls.Certificate{mcpCert}, NextProtos: []string{"h2", "http/1.1"}}, mcpHandler())
	host, port, _ := net.SplitHostPort(mcpAddr)
	p, _ := strconv.Atoi(port)
	target := net.JoinHostPort(testlab.DefaultHost, port)
	l.out.Servers["mcp"] = mcpAddr
	l.out.Scenarios["mcp"] = scenarioOut{Host: testlab.DefaultHost, IP: host, Port: p, Addr: mcpAddr,
		Target: target, URL: "https://" + target + "/mcp",
		NotAfter: mcpCert.Leaf.NotAfter.UTC().Format(time.RFC3339),
		Note:     "/mcp speaks MCP (serverInfo.name labmcp), /private/mcp answers 401, / is not MCP"}
}

// mcpHandler is just enough of the streamable HTTP transport for a client's
// initialize: JSON responses, a session id, 202 for notifications.
func mcpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/private/mcp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="https://`+r.Host+`/.well-known/oauth-protected-resource"`)
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
	})
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var req struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Method  string          `json:"method"`
			Params  struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"params"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		if len(req.ID) == 0 { // a notification
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var result any
		switch req.Method {
		case "initialize":
			pv := req.Params.ProtocolVersion
			if pv == "" {
				pv = "2025-06-18"
			}
			result = map[string]any{
				"protocolVersion": pv,
				"capabilities":    map[string]any{"tools": map[string]any{}},
				"serverInfo":      map[string]any{"name": "labmcp", "version": "1.0.0"},
			}
			w.Header().Set("Mcp-Session-Id", "lab-session-1")
		case "ping":
			result = map[string]any{}
		case "tools/list":
			result = map[string]any{"tools": []any{}}
		default:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID,
				"error": map[string]any{"code": -32601, "message": "method not found"}})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return mux
}
