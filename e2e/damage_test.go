package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// The damaged-file suite: the built binary on a 50-watch database with
// garbage over each page in turn, and cut short at several sizes. `watch
// ls`, `db check` and `serve` each either read the file cleanly or end with
// one line on stderr saying the database is damaged (or not a database),
// where, and what to do, exit 3; never a panic or a goroutine trace. And
// whatever `db check` calls whole, the other two read in full.

const fixtureWatches = 50

// writeFixture writes a 50-watch database (targets on closed loopback
// ports, so that a serve that probes them reaches nothing beyond
// 127.0.0.1) with a few reports each.
func writeFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fixture.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var ups []store.Update
	for i := range fixtureWatches {
		r := store.Record{ID: fmt.Sprintf("w_%016x", i), Target: probe.TargetInfo{Host: "127.0.0.1", Port: 1 + i},
			Schedule: "@every 1h", Thresholds: probe.DefaultThresholds, FailureThreshold: 3, CreatedAt: now,
			State: "down", LastCheckedAt: now, LastStatus: "down", ConsecutiveFailures: 3}
		ups = append(ups, store.Update{Record: r, Create: true})
		for j := range 3 {
			rep := &probe.Report{CheckedAt: now.Add(time.Duration(j-3) * time.Minute), Status: probe.StatusDown,
				Findings: []probe.Finding{{Code: "connection_refused", Severity: "critical", Message: "refused"}}, ExpiryStage: "none",
				Target: r.Target}
			ups = append(ups, store.Update{Record: r, Report: rep, Transition: j == 0})
		}
	}
	if _, err := db.Apply(ups); err != nil {
		t.Fatal(err)
	}
	// The last write is one more probe result, as in a running file: with
	// its meta page damaged, bbolt falls back to the other meta page, the
	// state before that write (db check warns), so what is lost is one
	// write, never the watches.
	last := ups[len(ups)-1]
	last.Report = &probe.Report{CheckedAt: now, Status: probe.StatusDown, Findings: []probe.Finding{}, ExpiryStage: "none", Target: last.Record.Target}
	if _, err := db.Apply([]store.Update{last}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// outcome is one run of the binary.
type outcome struct {
	code           int
	stdout, stderr string
	watches        int // watches read (-1: none)
}

func runBinary(t *testing.T, stdin string, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	o := outcome{stdout: out.String(), stderr: errb.String(), watches: -1}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		o.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%v: still running after 30 s", args)
	}
	return o
}

func watchLs(t *testing.T, db string) outcome {
	o := runBinary(t, "", "watch", "ls", "--json", "--db", db)
	var doc struct{ Watches []json.RawMessage }
	if o.code == 0 && json.Unmarshal([]byte(o.stdout), &doc) == nil {
		o.watches = len(doc.Watches)
	}
	return o
}

// serveList runs `serve` over stdio, asks for list_watches, and closes
// stdin once the answer is in (or serve has exited).
func serveList(t *testing.T, db string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--db", db, "--backup-every", "0")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"damage","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_watches","arguments":{}}}`,
	} {
		io.WriteString(stdin, line+"\n")
	}
	o := outcome{watches: -1}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var msg struct {
			ID     int `json:"id"`
			Result struct {
				IsError           bool `json:"isError"`
				StructuredContent struct {
					Watches []json.RawMessage `json:"watches"`
				} `json:"structuredContent"`
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil || msg.ID != 2 {
			continue
		}
		if !msg.Result.IsError {
			o.watches = len(msg.Result.StructuredContent.Watches)
		} else if len(msg.Result.Content) > 0 {
			o.stdout = msg.Result.Content[0].Text
		}
		break
	}
	stdin.Close()
	io.Copy(io.Discard, stdout)
	err := cmd.Wait()
	o.stderr = errb.String()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		o.code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("serve on %s: still running after 30 s\n%s", db, o.stderr)
	}
	return o
}

// checkOutcome asserts the contract of one run: a clean read of all the
// watches, or exit 3 with one advice line (the last on stderr); never a
// panic.
func checkOutcome(t *testing.T, what string, o outcome, okCodes ...int) {
	t.Helper()
	for _, bad := range []string{"panic", "goroutine ", "runtime error", "SIGBUS", "SIGSEGV"} {
		if strings.Contains(o.stderr, bad) {
			t.Errorf("%s: %q on stderr:\n%s", what, bad, o.stderr)
			return
		}
	}
	lines := strings.Split(strings.TrimSpace(o.stderr), "\n")
	last := lines[len(lines)-1]
	switch {
	case o.code == 3:
		if !strings.HasPrefix(last, "tlswatch: ") || !(strings.Contains(last, "is damaged") && strings.Contains(last, "tlswatch db restore") ||
			strings.Contains(last, "is not a tlswatch database")) {
			t.Errorf("%s: exit 3 without the advice line; stderr:\n%s", what, o.stderr)
		}
	case contains(okCodes, o.code):
	default:
		t.Errorf("%s: exit %d; stderr:\n%s", what, o.code, o.stderr)
	}
}

func contains(codes []int, c int) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

// runAll runs the three commands on a copy of data and checks them.
func runAll(t *testing.T, data []byte) {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "tlswatch.db")
	write := func() {
		if err := os.WriteFile(db, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write()
	chk := runBinary(t, "", "db", "check", "--db", db)
	checkOutcome(t, "db check", chk, 0, 1)
	ls := watchLs(t, db)
	checkOutcome(t, "watch ls", ls, 0)
	write() // the same damage for serve, whatever watch ls wrote
	srv := serveList(t, db)
	checkOutcome(t, "serve", srv, 0)
	if srv.code == 0 && srv.watches < 0 && (!strings.Contains(srv.stdout, "is damaged") || !strings.Contains(srv.stderr, "watches are no longer saved")) {
		// Damage that loading does not read is met at the first call that
		// does: serve stays up, says so in the log, and the call fails.
		t.Errorf("serve: list_watches failed without naming the damage: %q\n%s", srv.stdout, srv.stderr)
	}
	if chk.code == 0 || chk.code == 1 {
		if ls.watches != fixtureWatches || srv.watches != fixtureWatches {
			t.Errorf("db check calls the file whole, but watch ls read %d watches (%s) and serve %d (%s %s)",
				ls.watches, ls.stderr, srv.watches, srv.stdout, srv.stderr)
		}
	}
}

func TestDamagedPages(t *testing.T) {
	raw, err := os.ReadFile(writeFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for pg := range len(raw) / 4096 {
		t.Run(fmt.Sprintf("page%d", pg), func(t *testing.T) {
			data := bytes.Clone(raw)
			for i := pg * 4096; i < (pg+1)*4096; i++ {
				data[i] = byte(r.Uint32())
			}
			runAll(t, data)
		})
	}
}

func TestTruncatedFile(t *testing.T) {
	raw, err := os.ReadFile(writeFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, 4096, 8192, 5 * 4096, len(raw) / 2, len(raw) - 4096, len(raw) - 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { runAll(t, raw[:size]) })
	}
}

// A 0-byte file is refused and left empty; only a missing path becomes a
// new database.
func TestEmptyFileNotReinitialised(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tlswatch.db")
	os.WriteFile(db, nil, 0o600)
	for _, o := range []outcome{watchLs(t, db), serveList(t, db)} {
		if o.code != 3 || !strings.Contains(o.stderr, "is empty (0 bytes)") {
			t.Errorf("exit %d; stderr:\n%s", o.code, o.stderr)
		}
	}
	if fi, err := os.Stat(db); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file was touched: %v %v", fi.Size(), err)
	}
}

// db restore brings back a backup that db check passes, and keeps the
// damaged file aside.
func TestBackupRestoreCLI(t *testing.T) {
	raw, err := os.ReadFile(writeFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "tlswatch.db")
	os.WriteFile(db, raw, 0o600)
	if o := runBinary(t, "", "db", "backup", "--db", db); o.code != 0 || !strings.Contains(o.stdout, "backed up") {
		t.Fatalf("db backup: %d %s %s", o.code, o.stdout, o.stderr)
	}
	for pg := 2; pg < len(raw)/4096; pg++ {
		copy(raw[pg*4096:], bytes.Repeat([]byte{0xa5}, 4096))
	}
	os.WriteFile(db, raw, 0o600)
	if o := watchLs(t, db); o.code != 3 {
		t.Fatalf("watch ls on the damaged file: %d %s", o.code, o.stderr)
	}
	o := runBinary(t, "", "db", "restore", "--db", db)
	if o.code != 0 || !strings.Contains(o.stdout, "restored") || !strings.Contains(o.stdout, ".damaged-") {
		t.Fatalf("db restore: %d %s %s", o.code, o.stdout, o.stderr)
	}
	if o := runBinary(t, "", "db", "check", "--db", db); o.code != 0 || !strings.Contains(o.stdout, "ok, schema") {
		t.Errorf("db check after restore: %d %s %s", o.code, o.stdout, o.stderr)
	}
	if o := watchLs(t, db); o.code != 0 || o.watches != fixtureWatches {
		t.Errorf("watch ls after restore: %d watches, exit %d %s", o.watches, o.code, o.stderr)
	}
	aside, _ := filepath.Glob(db + ".damaged-*")
	if len(aside) != 1 {
		t.Errorf("damaged file kept aside: %v", aside)
	}
}
