package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// result is what one run() produced.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI calls run like main does, with stdin and captured output.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// wantBadInput asserts exit 3, nothing on stdout and exactly one line on
// stderr that starts with "tlswatch: " and contains each of want.
func wantBadInput(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code != exitUnknown {
		t.Errorf("exit code %d, want %d; stderr %q", r.code, exitUnknown, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "tlswatch: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr %q, want one line starting with \"tlswatch: \"", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not contain %q", r.stderr, w)
		}
	}
}

// lab is a PKI with its trusted root written to a --ca-file.
type lab struct {
	pki    *testlab.PKI
	caFile string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	p := testlab.NewPKI(t)
	f := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(f, []byte(p.Root.PEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	return &lab{pki: p, caFile: f}
}

// serve starts a loopback TLS server with a leaf made from o and returns
// the target ("tlswatch.test:PORT") to probe with --ip 127.0.0.1.
func (l *lab) serve(t *testing.T, o testlab.LeafOpts) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(l.serveAddr(t, o))
	return testlab.DefaultHost + ":" + port
}

// serveAddr starts a loopback TLS server with a leaf made from o and returns
// its address ("127.0.0.1:PORT").
func (l *lab) serveAddr(t *testing.T, o testlab.LeafOpts) string {
	t.Helper()
	cert := l.pki.Leaf(o)
	return testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
}

// loopbackIP is the SAN of certificates probed by address (scan has no --ip).
var loopbackIP = []net.IP{net.IPv4(127, 0, 0, 1)}

// days is the lab clock plus n days and a margin, so days_remaining is n.
func (l *lab) days(n int) time.Time {
	return l.pki.Now.Add(time.Duration(n)*24*time.Hour + 6*time.Hour)
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		r := runCLI(t, "", args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "tlswatch ") || r.stderr != "" {
			t.Errorf("%v: code %d stdout %q stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	old := version
	version = "v9.9.9"
	defer func() { version = old }()
	if r := runCLI(t, "", "version"); r.stdout != "tlswatch v9.9.9\n" {
		t.Errorf("with -X main.version: %q", r.stdout)
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "Commands:"},
		{[]string{"--help"}, "Commands:"},
		{[]string{"help", "check"}, "usage: tlswatch check TARGET"},
		{[]string{"check", "-h"}, "--timeout duration"},
		{[]string{"check", "example.com", "--help"}, "usage: tlswatch check"},
		{[]string{"help", "watch", "add"}, "--thresholds stages"},
		{[]string{"watch", "ls", "-h"}, "usage: tlswatch watch ls"},
		{[]string{"expiring", "-h"}, "--within days"},
		{[]string{"scan", "-h"}, "--concurrency n"},
		{[]string{"serve", "-h"}, "--token token"},
		{[]string{"watch", "--help"}, "tlswatch watch rm ID|TARGET"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) || r.stderr != "" {
			t.Errorf("%v: code %d, stderr %q, stdout lacks %q:\n%s", tc.args, r.code, r.stderr, tc.want, r.stdout)
		}
	}
	if r := runCLI(t, ""); r.code != exitUnknown || !strings.Contains(r.stderr, "Commands:") {
		t.Errorf("no arguments: code %d, stderr %q", r.code, r.stderr)
	}
}

// Every bad input: one line naming the field and the reason, exit 3, and no
// probe attempted.
func TestBadInput(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{[]string{"check"}, []string{"target: missing"}},
		{[]string{"check", "a.example", "b.example"}, []string{`unexpected argument "b.example"`}},
		{[]string{"check", "example.com", "--timeout", "abc"}, []string{`--timeout: invalid duration "abc"`}},
		{[]string{"check", "--timeout=-1s", "example.com"}, []string{"--timeout: must be positive"}},
		{[]string{"check", "example.com:70000"}, []string{"target: ", "70000", "1-65535"}},
		{[]string{"check", "http://example.com"}, []string{"target: ", "http"}},
		{[]string{"check", "https://user@example.com"}, []string{"target: ", "credentials"}},
		{[]string{"check", "example.com", "--ip", "not-an-ip"}, []string{"--ip: "}},
		{[]string{"check", "example.com", "--bogus"}, []string{"check: ", "-bogus"}},
		{[]string{"check", "example.com", "--timeout"}, []string{"check: ", "-timeout"}},
		{[]string{"check", "example.com", "--ca-file", "/nonexistent/root.pem"}, []string{"--ca-file", "/nonexistent/root.pem"}},
		{[]string{"--min-interval", "soon", "check", "example.com"}, []string{`--min-interval: invalid duration "soon"`}},
		{[]string{"watch"}, []string{"watch: missing subcommand"}},
		{[]string{"watch", "sing"}, []string{`watch: unknown subcommand "sing"`}},
		{[]string{"watch", "add", "--db", db}, []string{"target: missing"}},
		{[]string{"watch", "add", "example.com", "--db", db, "--thresholds", "30,x"}, []string{`--thresholds: "x": want whole days`}},
		{[]string{"watch", "rm", "--db", db}, []string{"watch rm: missing ID or TARGET"}},
		{[]string{"expiring", "--within", "soon", "--db", db}, []string{`--within: "soon" is not a whole number`}},
		{[]string{"expiring", "--within", "-3", "--db", db}, []string{"--within: -3 out of range 0-3650"}},
		{[]string{"watch", "add", "example.com", "--db", db, "--schedule", "daily"}, []string{`--schedule: "daily"`}},
		{[]string{"watch", "add", "example.com", "--db", db, "--thresholds", "400"}, []string{"--thresholds: 400 out of range 1-365"}},
		{[]string{"watch", "add", "example.com", "--db", db, "--thresholds", sixtyFive()}, []string{"--thresholds: 65 values, at most 16"}},
		{[]string{"serve", "--db", db, "--max-watches", "0"}, []string{"--max-watches: must be at least 1, got 0"}},
		{[]string{"serve", "--db", db, "--max-watches-per-subject", "-5"}, []string{"--max-watches-per-subject: must be at least 1, got -5"}},
		{[]string{"scan"}, []string{"scan: missing FILE"}},
		{[]string{"scan", "-", "--concurrency", "0"}, []string{`--concurrency: "0" out of range 1-64`}},
		{[]string{"scan", "-", "--timeout", "3 s"}, []string{`--timeout: invalid duration "3 s"`}},
		{[]string{"scan", "/nonexistent/targets.txt"}, []string{"scan: ", "/nonexistent/targets.txt"}},
		{[]string{"serve", "extra"}, []string{`serve: unexpected argument "extra"`}},
		{[]string{"serve", "--db", db, "--http", "127.0.0.1:0", "--token", ""}, []string{"--token: empty"}},
		{[]string{"serve", "--db", db, "--token=", "--read-only"}, []string{"--token: empty"}},
		{[]string{"serve", "--db", db, "--http", "127.0.0.1:0", "--token", "t", "--auth-issuer", "https://idp.example.com"}, []string{"--auth-issuer: cannot be combined with --token"}},
		{[]string{"serve", "--db", db, "--http", "127.0.0.1:0", "--public-url", "https://tlswatch.example.com/mcp"}, []string{"--public-url: needs --auth-issuer"}},
		{[]string{"serve", "--db", db, "--http", "127.0.0.1:0", "--auth-introspect", "https://idp.example.com/introspect"}, []string{"--auth-introspect: needs --auth-issuer"}},
		{[]string{"serve", "--db", db, "--http", "127.0.0.1:0", "--auth-issuer", "https://idp.example.com", "--auth-introspect", "https://idp.example.com/i",
			"--auth-introspect-client-id-env", "TLSWATCH_TEST_UNSET_ID"}, []string{"--auth-introspect: set the client credentials in TLSWATCH_TEST_UNSET_ID and TLSWATCH_INTROSPECT_CLIENT_SECRET"}},
		{[]string{"help", "nope"}, []string{`help: unknown command "nope"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			wantBadInput(t, runCLI(t, "", tc.args...), tc.want...)
		})
	}
	if _, err := os.Stat(db); err == nil {
		t.Errorf("a rejected command created the database %s", db)
	}
}

// sixtyFive is --thresholds with 65 values (the call that once made a
// record the store could not read).
func sixtyFive() string {
	days := make([]string, 65)
	for i := range days {
		days[i] = strconv.Itoa(i + 1)
	}
	return strings.Join(days, ",")
}

func TestScanEmptyInput(t *testing.T) {
	wantBadInput(t, runCLI(t, "# nothing\n\n", "scan", "-"), "scan: no targets")
}

func TestParseArgsInterspersed(t *testing.T) {
	c := &cli{}
	for _, tc := range []struct {
		args    []string
		pos     []string
		timeout string
		json    bool
	}{
		{[]string{"host", "--json"}, []string{"host"}, "", true},
		{[]string{"--timeout", "3s", "host", "--json"}, []string{"host"}, "3s", true},
		{[]string{"host", "--timeout=3s", "extra"}, []string{"host", "extra"}, "3s", false},
		{[]string{"--", "--json"}, []string{"--json"}, "", false},
		{[]string{"host", "--", "-x", "--json"}, []string{"host", "-x", "--json"}, "", false},
	} {
		fs := newFlagSet("check", c)
		timeout := fs.String("timeout", "", "")
		asJSON := fs.Bool("json", false, "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(pos, tc.pos) || *timeout != tc.timeout || *asJSON != tc.json {
			t.Errorf("%v: pos %q timeout %q json %v; want %q %q %v", tc.args, pos, *timeout, *asJSON, tc.pos, tc.timeout, tc.json)
		}
	}
}

func TestSharedFlagsAnywhere(t *testing.T) {
	c := &cli{}
	fs := newFlagSet("tlswatch", c)
	if err := fs.Parse([]string{"--ca-file", "a.pem", "check"}); err != nil {
		t.Fatal(err)
	}
	fs = newFlagSet("check", c)
	if _, err := parseArgs(fs, []string{"host", "--ca-file", "b.pem", "--db", "x.db"}); err != nil {
		t.Fatal(err)
	}
	if got := c.caFiles(); !reflect.DeepEqual(got, []string{"a.pem", "b.pem"}) {
		t.Errorf("ca files %q", got)
	}
	if c.shared.db != "x.db" {
		t.Errorf("db %q", c.shared.db)
	}
}

func TestCAFileEnv(t *testing.T) {
	t.Setenv("TLSWATCH_CA_FILE", strings.Join([]string{"/a.pem", "", "/b.pem"}, string(os.PathListSeparator)))
	if got := (&cli{}).caFiles(); !reflect.DeepEqual(got, []string{"/a.pem", "/b.pem"}) {
		t.Errorf("from env: %q", got)
	}
	c := &cli{shared: sharedFlags{caFiles: stringList{"/c.pem"}}}
	if got := c.caFiles(); !reflect.DeepEqual(got, []string{"/c.pem"}) {
		t.Errorf("flag over env: %q", got)
	}
}

func TestDBPathDefault(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	c := &cli{}
	cfg, err := c.config(true)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(state, "tlswatch", "tlswatch.db")
	if cfg.DBPath != want {
		t.Errorf("DBPath %q, want %q", cfg.DBPath, want)
	}
	st, err := os.Stat(filepath.Dir(want))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v, mode %v; want 0700", err, st.Mode().Perm())
	}

	home := t.TempDir()
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", home)
	got, err := dbPath("")
	if err != nil || got != filepath.Join(home, ".local", "state", "tlswatch", "tlswatch.db") {
		t.Errorf("HOME fallback: %q, %v", got, err)
	}
	if got, _ := dbPath("/x/y.db"); got != "/x/y.db" {
		t.Errorf("--db: %q", got)
	}
}

func TestColor(t *testing.T) {
	old := isTerminal
	defer func() { isTerminal = old }()
	isTerminal = func(io.Writer) bool { return true }
	t.Setenv("TERM", "xterm")
	t.Setenv("NO_COLOR", "")
	if !colorFor(nil).on {
		t.Error("terminal, NO_COLOR empty: want colour")
	}
	if got := colorFor(nil).status("down"); got != "\x1b[1;31mDOWN\x1b[0m" {
		t.Errorf("coloured status %q", got)
	}
	t.Setenv("NO_COLOR", "1")
	if colorFor(nil).on {
		t.Error("NO_COLOR set: want no colour")
	}
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "dumb")
	if colorFor(nil).on {
		t.Error("TERM=dumb: want no colour")
	}
	t.Setenv("TERM", "xterm")
	isTerminal = func(io.Writer) bool { return false }
	if colorFor(nil).on {
		t.Error("not a terminal: want no colour")
	}
}

// serve over stdio through run(): protocol and nothing else on stdout, the
// database created under --db, exit 0 when stdin closes.
func TestServeStdio(t *testing.T) {
	db := filepath.Join(t.TempDir(), "state", "tlswatch.db")
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}` + "\n"
	old := version
	version = "v1.2.3-test"
	defer func() { version = old }()
	r := runCLI(t, init, "serve", "--db", db)
	if r.code != exitOK {
		t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
	}
	wantOnlyJSONRPC(t, r.stdout)
	if !strings.Contains(r.stdout, `"serverInfo":{"name":"tlswatch","version":"v1.2.3-test"}`) {
		t.Errorf("initialize result lacks the server name and version:\n%s", r.stdout)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("database: %v", err)
	}
}

// wantOnlyJSONRPC asserts that stdout (the MCP wire on stdio) carries nothing
// but JSON-RPC messages, one per line.
func wantOnlyJSONRPC(t *testing.T, stdout string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var msg struct {
			JSONRPC string `json:"jsonrpc"`
		}
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &msg); err != nil || msg.JSONRPC != "2.0" {
			t.Errorf("stdout line is not JSON-RPC: %q", line)
		}
	}
}
