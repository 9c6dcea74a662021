package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// Not a terminal: one JSON object per target, the Report plus input and
// line; a bad line gets an error; the exit code is the worst.
func TestScanJSONLines(t *testing.T) {
	l := newLab(t)
	// scan has no --ip: certificates for the loopback address itself.
	ok := l.serveAddr(t, testlab.LeafOpts{IPs: loopbackIP})
	expired := l.serveAddr(t, testlab.LeafOpts{IPs: loopbackIP,
		NotBefore: l.pki.Now.Add(-100 * 24 * time.Hour), NotAfter: l.pki.Now.Add(-48 * time.Hour)})
	input := "# lab\n" + ok + "\n\n" + expired + "\n127.0.0.1:99999\n"

	r := runCLI(t, input, "scan", "-", "--ca-file", l.caFile, "--concurrency", "2", "--timeout", "10s")
	if r.code != exitCritical {
		t.Errorf("exit code %d, want %d (an expired target); stderr %q", r.code, exitCritical, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q: no progress when stderr is not a terminal", r.stderr)
	}
	got := map[int]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		got[int(m["line"].(float64))] = m
	}
	if len(got) != 3 {
		t.Fatalf("want 3 results (lines 2, 4, 5), got %d:\n%s", len(got), r.stdout)
	}
	if m := got[2]; m["input"] != ok || m["status"] != "ok" || m["leaf"] == nil {
		t.Errorf("line 2: %v", m)
	}
	if m := got[4]; m["status"] == "ok" || m["status"] == "warning" {
		t.Errorf("line 4 (expired): %v", m)
	}
	if m := got[5]; m["error"] == nil || !strings.Contains(m["error"].(string), "99999") || m["status"] != nil {
		t.Errorf("line 5 (bad port): %v", m)
	}
}

// On a terminal: a line per target for a person, a progress line and a
// summary on stderr.
func TestScanTerminal(t *testing.T) {
	old := isTerminal
	isTerminal = func(io.Writer) bool { return true }
	defer func() { isTerminal = old }()
	t.Setenv("NO_COLOR", "1")

	l := newLab(t)
	target := l.serveAddr(t, testlab.LeafOpts{IPs: loopbackIP, NotAfter: l.days(10)})
	file := filepath.Join(t.TempDir(), "targets.txt")
	if err := os.WriteFile(file, []byte(target+"\n"+target+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "scan", file, "--ca-file", l.caFile)
	if r.code != exitWarning {
		t.Errorf("exit code %d, want %d; stderr %q", r.code, exitWarning, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got:\n%s", r.stdout)
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "WARNING   "+target+"  expires in 10 days  "+probe.CodeExpiringSoon) {
			t.Errorf("line %q", line)
		}
	}
	if !strings.Contains(r.stderr, "scanning [############............] 1/2") || !strings.HasSuffix(r.stderr, "scanned 2 targets: 2 warning\n") {
		t.Errorf("progress on stderr: %q", r.stderr)
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("colour despite NO_COLOR: %q", r.stdout)
	}
}
