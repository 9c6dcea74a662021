package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/watch"
)

// watch add, ls, rm and expiring on one database, as a person would use them.
func TestWatchCommands(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(t.TempDir(), "state", "tlswatch.db") // the directory does not exist yet
	soon := l.serve(t, testlab.LeafOpts{NotAfter: l.days(5)})
	fine := l.serve(t, testlab.LeafOpts{})
	shared := []string{"--db", db, "--ca-file", l.caFile}
	cli := func(args ...string) result {
		t.Helper()
		return runCLI(t, "", append(args, shared...)...)
	}

	r := cli("watch", "add", soon, "--ip", "127.0.0.1", "--schedule", "@every 1h", "--thresholds", "21,7,1", "--json")
	if r.code != exitOK {
		t.Fatalf("watch add: code %d, stderr %q", r.code, r.stderr)
	}
	var w watch.Watch
	if err := json.Unmarshal([]byte(r.stdout), &w); err != nil {
		t.Fatalf("watch add --json: %v\n%s", err, r.stdout)
	}
	if w.ID == "" || w.Schedule != "@every 1h" || w.LastReport == nil || w.LastReport.Leaf == nil || w.LastReport.Leaf.DaysRemaining != 5 {
		t.Errorf("added watch: %+v", w)
	}
	if st, err := os.Stat(filepath.Dir(db)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("database directory: %v (want mode 0700)", err)
	}

	r = cli("watch", "add", fine, "--ip", "127.0.0.1")
	if r.code != exitOK || !strings.Contains(r.stdout, "watching "+fine+" as w") || !strings.Contains(r.stdout, "first probe: OK") {
		t.Errorf("watch add (text): code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}

	r = cli("watch", "ls", "--json")
	var ls struct {
		Watches []watch.Watch `json:"watches"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil || r.code != exitOK || len(ls.Watches) != 2 {
		t.Fatalf("watch ls --json: code %d, %v\n%s", r.code, err, r.stdout)
	}

	r = cli("watch", "ls")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "ID ") || !strings.Contains(r.stdout, w.ID) || !strings.Contains(r.stdout, fine) {
		t.Errorf("watch ls: code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}

	r = cli("expiring", "--json")
	var exp struct {
		WithinDays *int          `json:"within_days"`
		Watches    []watch.Watch `json:"watches"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &exp); err != nil || r.code != exitOK {
		t.Fatalf("expiring --json: code %d, %v\n%s", r.code, err, r.stdout)
	}
	if exp.WithinDays == nil || *exp.WithinDays != 30 || len(exp.Watches) != 1 || exp.Watches[0].ID != w.ID {
		t.Errorf("expiring --json: %s", r.stdout)
	}
	r = cli("expiring")
	if r.code != exitOK || !strings.Contains(r.stdout, w.ID) || strings.Contains(r.stdout, fine) {
		t.Errorf("expiring: code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}

	// Remove by id, then by target.
	if r = cli("watch", "rm", w.ID); r.code != exitOK || !strings.Contains(r.stdout, "removed "+w.ID) {
		t.Errorf("watch rm ID: code %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	if r = cli("watch", "rm", fine); r.code != exitOK || !strings.Contains(r.stdout, "removed ") {
		t.Errorf("watch rm TARGET: code %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	wantBadInput(t, cli("watch", "rm", fine), `no watch with id or target "`+fine+`"`)

	if r = cli("watch", "ls"); r.code != exitOK || !strings.HasPrefix(r.stdout, "no watches") {
		t.Errorf("watch ls after rm: code %d, %q", r.code, r.stdout)
	}
	if r = cli("watch", "ls", "--json"); strings.TrimSpace(r.stdout) != "{\n  \"watches\": []\n}" {
		t.Errorf("empty list JSON: %q", r.stdout)
	}
}

func TestWatchAddFieldErrorsNameFlags(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	wantBadInput(t, runCLI(t, "", "watch", "add", "tlswatch.test", "--db", db, "--schedule", "every hour"), "--schedule: ")
	wantBadInput(t, runCLI(t, "", "watch", "add", "tlswatch.test", "--db", db, "--thresholds", "30,0"), "--thresholds: ")
	wantBadInput(t, runCLI(t, "", "watch", "add", "smtp://tlswatch.test", "--db", db, "--mcp"), "--mcp: ")
}

// watch add --mcp on a live MCP server: the first probe speaks MCP too,
// and the watch shows the server.
func TestWatchAddMCP(t *testing.T) {
	l := newLab(t)
	srv := testlab.ServeMCP(t, l.pki, "lab-mcp", "echo", "search")
	db := filepath.Join(t.TempDir(), "t.db")
	r := runCLI(t, "", "watch", "add", srv.URL, "--ip", "127.0.0.1", "--mcp", "--db", db, "--ca-file", l.caFile)
	if r.code != exitOK || !strings.Contains(r.stdout, "MCP: lab-mcp 1.0.0, protocol 2025-11-25, 2 tools (sha256:") {
		t.Fatalf("watch add --mcp: code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	r = runCLI(t, "", "watch", "ls", "--json", "--db", db)
	var ls struct {
		Watches []watch.Watch `json:"watches"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil || len(ls.Watches) != 1 {
		t.Fatalf("watch ls --json: %v\n%s", err, r.stdout)
	}
	if w := ls.Watches[0]; !w.MCPLevel || w.MCP == nil || w.MCP.ToolCount != 2 || w.MCPStats == nil || w.MCPStats.Uptime != 1 {
		t.Errorf("watch: mcp_level %v, mcp %+v, mcp_stats %+v", w.MCPLevel, w.MCP, w.MCPStats)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(r.stdout)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"mcp":{"protocol_version":"2025-11-25","server":{"name":"lab-mcp","version":"1.0.0"},"tool_count":2,"tools_hash":"sha256:`, `"mcp_stats":{"probes":1,`} {
		if !strings.Contains(compact.String(), k) {
			t.Errorf("watch ls --json lacks %s:\n%s", k, r.stdout)
		}
	}
}

// Colour codes do not count as width: columns line up on a terminal too.
func TestTableAlignsWithColour(t *testing.T) {
	tb := table{header: []string{"STATE", "TARGET"}, rows: [][]cell{
		{{text: "up", color: stateColor("up")}, {text: "a:443"}},
		{{text: "pending"}, {text: "b:443"}},
	}}
	var b strings.Builder
	tb.write(&b, palette{on: true})
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(b.String(), "")
	want := "STATE    TARGET\nup       a:443\npending  b:443\n"
	if plain != want {
		t.Errorf("table:\n%s\nwant:\n%s", plain, want)
	}
	if !strings.Contains(b.String(), ansiGreen+"up"+ansiReset) {
		t.Errorf("state not coloured: %q", b.String())
	}
}

// The CLI works on the database of a running `tlswatch serve` (two IDE
// windows and a terminal share one --db): it follows the server's process.
func TestWatchCommandsWhileServing(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(t.TempDir(), "tlswatch.db")
	target := l.serve(t, testlab.LeafOpts{})

	stdin, closeStdin := io.Pipe()
	served := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"serve", "--db", db, "--ca-file", l.caFile}, stdin, &out, &errOut)
		served <- result{code, out.String(), errOut.String()}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(db); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not create the database")
		}
	}

	r := runCLI(t, "", "watch", "add", target, "--ip", "127.0.0.1", "--db", db, "--ca-file", l.caFile)
	if r.code != exitOK || !strings.Contains(r.stdout, "first probe: OK") {
		t.Errorf("watch add beside serve: code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	if r = runCLI(t, "", "watch", "ls", "--db", db); r.code != exitOK || !strings.Contains(r.stdout, target) {
		t.Errorf("watch ls beside serve: code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}

	closeStdin.Close()
	select {
	case s := <-served:
		if s.code != exitOK {
			t.Errorf("serve: exit %d, stderr %q", s.code, s.stderr)
		}
		wantOnlyJSONRPC(t, s.stdout)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop when stdin closed")
	}
}
