package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/tools"
)

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkClientConfig asserts the shape MCP hosts expect: a "mcpServers"
// (Claude Desktop, Cursor) or "servers" (VS Code) map of named entries, each
// either a command with args (stdio) or a url (HTTP).
func checkClientConfig(t *testing.T, where, text string) {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Errorf("%s: not JSON: %v\n%s", where, err, text)
		return
	}
	raw, ok := doc["mcpServers"]
	if !ok {
		raw, ok = doc["servers"]
	}
	if !ok {
		t.Errorf("%s: neither mcpServers nor servers", where)
		return
	}
	var servers map[string]struct {
		Type    string            `json:"type"`
		Command string            `json:"command"`
		Args    []string          `json:"args"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(raw, &servers); err != nil {
		t.Errorf("%s: servers: %v", where, err)
		return
	}
	s, ok := servers["tlswatch"]
	if !ok || len(servers) != 1 {
		t.Errorf("%s: want exactly one server named tlswatch, got %d", where, len(servers))
		return
	}
	switch {
	case s.Command != "":
		if s.Command != "tlswatch" || len(s.Args) == 0 || s.Args[0] != "serve" {
			t.Errorf("%s: stdio entry %+v, want command tlswatch with args [serve ...]", where, s)
		}
	case s.URL != "":
		// With a token the entry sends it; an OAuth-protected server needs
		// no header (the host signs in by itself).
		if !strings.HasSuffix(s.URL, "/mcp") || (s.Headers != nil && !strings.HasPrefix(s.Headers["Authorization"], "Bearer ")) {
			t.Errorf("%s: HTTP entry %+v, want a /mcp url and, when it has headers, an Authorization: Bearer header", where, s)
		}
	default:
		t.Errorf("%s: entry has neither command nor url", where)
	}
	if _, vscode := doc["servers"]; vscode && s.Type == "" {
		t.Errorf("%s: VS Code entries name their type (stdio or http)", where)
	}
}

func TestMCPJSON(t *testing.T) {
	checkClientConfig(t, "mcp.json", readRepoFile(t, "mcp.json"))
	var doc struct {
		MCPServers map[string]struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"mcpServers"`
	}
	if err := json.Unmarshal([]byte(readRepoFile(t, "mcp.json")), &doc); err != nil {
		t.Fatal(err)
	}
	if e := doc.MCPServers["tlswatch"]; e.Command != "tlswatch" || strings.Join(e.Args, " ") != "serve" {
		t.Errorf("mcp.json entry %+v, want tlswatch serve", e)
	}
}

var jsonBlock = regexp.MustCompile("(?s)```json\n(.*?)```")

// Every client configuration in the README parses and has the right shape.
func TestREADMEClientConfigs(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	blocks := jsonBlock.FindAllStringSubmatch(readme, -1)
	if len(blocks) < 5 {
		t.Fatalf("README has %d JSON blocks; want the Claude Desktop, VS Code, Cursor and HTTP configurations", len(blocks))
	}
	keys := map[string]bool{}
	for i, b := range blocks {
		checkClientConfig(t, "README JSON block "+strconv.Itoa(i+1), b[1])
		var doc map[string]any
		json.Unmarshal([]byte(b[1]), &doc)
		for k := range doc {
			keys[k] = true
		}
	}
	if !keys["mcpServers"] || !keys["servers"] {
		t.Errorf("README configurations use keys %v; want both mcpServers and servers (VS Code)", keys)
	}
	for _, want := range []string{
		"claude mcp add tlswatch -- tlswatch serve",
		".vscode/mcp.json",
		"~/.cursor/mcp.json",
		"go install github.com/tlswatch/tlswatch/cmd/tlswatch@latest",
		"tlswatch serve --http 127.0.0.1:8931",
		"--auth-issuer", "/.well-known/oauth-protected-resource/mcp", "--read-only", "tlswatch:write",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README lacks %q", want)
		}
	}
}

// The README's test command is the one .ci/run runs, and it is among the two
// commands at the top.
func TestREADMETestCommand(t *testing.T) {
	ci := readRepoFile(t, ".ci/run")
	var cmd string
	for _, line := range strings.Split(ci, "\n") {
		if strings.HasPrefix(line, "go test ") {
			cmd = strings.TrimSpace(line)
		}
	}
	if cmd == "" || !strings.Contains(cmd, "-race") {
		t.Fatalf(".ci/run has no `go test -race` line (found %q)", cmd)
	}
	readme := readRepoFile(t, "README.md")
	top := readme[:strings.Index(readme, "\n## ")]
	if !strings.Contains(top, cmd) || !strings.Contains(top, "go run ./cmd/tlswatch") {
		t.Errorf("the README's opening does not give both `go run ./cmd/tlswatch ...` and %q", cmd)
	}
}

// tableCodes returns the first-column `code` of each row of the README table
// whose header row starts with header.
func tableRows(t *testing.T, readme, header string) map[string]string {
	t.Helper()
	i := strings.Index(readme, header)
	if i < 0 {
		t.Fatalf("README has no table starting %q", header)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(readme[i:], "\n")[2:] {
		if !strings.HasPrefix(line, "| `") {
			break
		}
		code := strings.SplitN(line[3:], "`", 2)[0]
		rows[code] = line
	}
	return rows
}

var update = flag.Bool("update", false, "rewrite the README's finding-code table from probe.Codes")

const codesHeader = "| code | severity | title | what to do |"

// codeRow is the README row of one finding code.
func codeRow(code string, info probe.CodeInfo) string {
	sev := string(info.Severity)
	if sev == "" {
		sev = info.Graded
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	return fmt.Sprintf("| `%s` | %s | %s | %s |", code, sev, esc(info.Title), esc(info.Fix))
}

// The finding-code table says what probe.Codes says, fix included. With
// -update it is rewritten: rows keep their order, new codes are appended.
func TestREADMEFindingCodes(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	i := strings.Index(readme, codesHeader)
	if i < 0 {
		t.Fatalf("README has no table starting %q", codesHeader)
	}
	lines := strings.Split(readme[i:], "\n")
	n := 2 // header and separator
	var order []string
	for _, line := range lines[2:] {
		if !strings.HasPrefix(line, "| `") {
			break
		}
		n++
		code := strings.SplitN(line[3:], "`", 2)[0]
		if _, ok := probe.Codes[code]; ok {
			order = append(order, code)
		}
	}
	var added []string
	for code := range probe.Codes {
		if !slices.Contains(order, code) {
			added = append(added, code)
		}
	}
	sort.Strings(added)
	want := lines[:2:2]
	for _, code := range append(order, added...) {
		want = append(want, codeRow(code, probe.Codes[code]))
	}
	have := strings.Join(lines[:n], "\n")
	if got := strings.Join(want, "\n"); got != have {
		if *update {
			if err := os.WriteFile("../../README.md", []byte(readme[:i]+got+readme[i+len(have):]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README finding-code table differs from probe.Codes; run: go test ./cmd/tlswatch -run READMEFindingCodes -update\nwant:\n%s", got)
	}
}

// The README's tool table lists exactly the tools the server registers.
func TestREADMETools(t *testing.T) {
	rows := tableRows(t, readRepoFile(t, "README.md"), "| tool | does |")
	var inREADME, served []string
	for name := range rows {
		inREADME = append(inREADME, name)
	}
	for _, tool := range tools.AllTools(tools.Deps{}) {
		served = append(served, tool.Def.Name)
	}
	sort.Strings(inREADME)
	sort.Strings(served)
	if strings.Join(inREADME, ",") != strings.Join(served, ",") {
		t.Errorf("README tool table %v differs from the tools the server registers %v: update the table under \"## MCP tools and resources\"", inREADME, served)
	}
}

// Every module the code imports is named, with a reason, in the README's
// dependency table (DESIGN.md: justify any dependency in the README).
func TestREADMEDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	cmd := exec.Command(gobin, "list", "-e", "-f", `{{join .Imports "\n"}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var modules []string
	for _, line := range strings.Split(readRepoFile(t, "go.mod"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && strings.Contains(f[0], ".") && strings.HasPrefix(f[1], "v") {
			modules = append(modules, f[0])
		}
	}
	used := map[string]bool{}
	for _, imp := range strings.Fields(string(out)) {
		if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") || strings.HasPrefix(imp, "github.com/tlswatch/tlswatch") {
			continue // standard library or our own
		}
		best := ""
		for _, m := range modules {
			if (imp == m || strings.HasPrefix(imp, m+"/")) && len(m) > len(best) {
				best = m
			}
		}
		if best == "" {
			best = imp
		}
		used[best] = true
	}
	rows := tableRows(t, readRepoFile(t, "README.md"), "| module | why |")
	for m := range used {
		if _, ok := rows[m]; !ok {
			t.Errorf("the code imports %s, which the README's dependency table does not justify", m)
		}
	}
	for m := range rows {
		if !used[m] {
			t.Errorf("the README's dependency table lists %s, which no package imports", m)
		}
	}
}

// The README's sample error lines ("$ tlswatch ..." then its stderr) are what
// the command prints.
func TestREADMEErrorExamples(t *testing.T) {
	lines := strings.Split(readRepoFile(t, "README.md"), "\n")
	n := 0
	for i, line := range lines {
		cmd, ok := strings.CutPrefix(line, "$ tlswatch ")
		if !ok || i+1 >= len(lines) {
			continue
		}
		n++
		r := runCLI(t, "", strings.Fields(cmd)...)
		if r.code != exitUnknown || r.stderr != lines[i+1]+"\n" {
			t.Errorf("README: $ tlswatch %s\n%s\ngot exit %d: %q", cmd, lines[i+1], r.code, r.stderr)
		}
	}
	if n == 0 {
		t.Error("README shows no sample error")
	}
}
