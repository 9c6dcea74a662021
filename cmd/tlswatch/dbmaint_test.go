package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/store"
)

// db check, backup and restore on a database that watch add wrote: they
// refuse (one line) while another process holds it; a damaged database makes
// watch ls and serve end with one line of advice; restore brings back the
// backup, and check passes it.
func TestDBCheckBackupRestore(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(t.TempDir(), "tlswatch.db")
	target := l.serve(t, testlab.LeafOpts{})
	if r := runCLI(t, "", "watch", "add", target, "--ip", "127.0.0.1", "--db", db, "--ca-file", l.caFile); r.code != exitOK {
		t.Fatalf("watch add: %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", "db", "check", "--db", db); r.code != exitOK || !strings.Contains(r.stdout, "ok, schema") || r.stderr != "" {
		t.Errorf("db check: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r := runCLI(t, "", "db", "check", "--json", "--db", db)
	var rep store.CheckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != exitOK || rep.Watches != 1 || rep.Damaged() {
		t.Errorf("db check --json: %d %v %s", r.code, err, r.stdout)
	}
	r = runCLI(t, "", "db", "backup", "--db", db)
	if r.code != exitOK || !strings.Contains(r.stdout, "backed up") {
		t.Fatalf("db backup: %d %q %q", r.code, r.stdout, r.stderr)
	}
	backups, _ := store.Backups(db, "")
	if len(backups) != 1 {
		t.Fatalf("backups: %+v", backups)
	}
	if r := runCLI(t, "", "db", "check", backups[0].Path); r.code != exitOK {
		t.Errorf("db check BACKUP: %d %q %q", r.code, r.stdout, r.stderr)
	}

	held, err := store.Open(db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check"}, {"backup"}, {"restore"}} {
		r := runCLI(t, "", append(append([]string{"db"}, args...), "--db", db)...)
		if r.code != exitUnknown || !strings.Contains(r.stderr, "in use by a running tlswatch serve") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("db %s on a held file: %d %q", args[0], r.code, r.stderr)
		}
	}
	held.Close()

	raw, _ := os.ReadFile(db)
	for pg := 2; pg < len(raw)/4096; pg++ {
		copy(raw[pg*4096:], bytes.Repeat([]byte{0x5a}, 4096))
	}
	os.WriteFile(db, raw, 0o600)
	advice := []string{"database " + db + " is damaged", "tlswatch db restore --db " + db}
	wantBadInput(t, runCLI(t, "", "watch", "ls", "--db", db), advice...)
	wantBadInput(t, runCLI(t, "", "serve", "--db", db), advice...)
	r = runCLI(t, "", "db", "check", "--db", db)
	if r.code != exitUnknown || !strings.Contains(r.stdout, "damaged") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, advice[1]) {
		t.Errorf("db check of the damaged file: %d %q %q", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, "", "db", "restore", "--db", db)
	if r.code != exitOK || !strings.Contains(r.stdout, "restored "+db+" from "+backups[0].Path+" (1 watches)") {
		t.Fatalf("db restore: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "db", "check", "--db", db); r.code != exitOK {
		t.Errorf("db check after restore: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "watch", "ls", "--db", db); r.code != exitOK || !strings.Contains(r.stdout, target) {
		t.Errorf("watch ls after restore: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestDBBadInput(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	empty := filepath.Join(t.TempDir(), "empty.db")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"db"}, []string{"db: missing subcommand (check, backup, restore, stats, compact)"}},
		{[]string{"db", "shrink"}, []string{`db: unknown subcommand "shrink"`}},
		{[]string{"db", "check", "a", "b"}, []string{`db check: unexpected argument "b"`}},
		{[]string{"db", "restore", "a", "b", "--db", db}, []string{`db restore: unexpected argument "b"`}},
		{[]string{"db", "backup", "--backup-keep", "0", "--db", db}, []string{"--backup-keep: must be at least 1"}},
		{[]string{"db", "backup", "--db", db}, []string{"--db " + db, "no such file"}},
		{[]string{"db", "restore", "--db", db}, []string{"no backup of " + db}},
		{[]string{"db", "check", "--db", empty}, []string{empty + " is not a tlswatch database", "empty (0 bytes)"}},
		{[]string{"watch", "ls", "--db", empty}, []string{empty + " is not a tlswatch database", "move this file away"}},
		{[]string{"serve", "--db", empty}, []string{empty + " is not a tlswatch database"}},
		{[]string{"serve", "--backup-every", "10s", "--db", db}, []string{"--backup-every: 10s is under a minute"}},
		{[]string{"serve", "--backup-every", "daily", "--db", db}, []string{`--backup-every: invalid duration "daily"`}},
		{[]string{"serve", "--backup-keep", "0", "--db", db}, []string{"--backup-keep: must be at least 1"}},
		{[]string{"serve", "--retention", "raw=10m", "--db", db}, []string{`--retention: raw "10m": out of range`}},
		{[]string{"serve", "--retention", "weekly=3d", "--db", db}, []string{`--retention: unknown kind "weekly"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			wantBadInput(t, runCLI(t, "", tc.args...), tc.want...)
		})
	}
	if _, err := os.Stat(db); err == nil {
		t.Errorf("a rejected command created the database %s", db)
	}
	if fi, _ := os.Stat(empty); fi.Size() != 0 {
		t.Errorf("the empty file was written")
	}
	for _, args := range [][]string{{"db", "-h"}, {"help", "db"}, {"db", "check", "-h"}, {"help", "db", "restore"}} {
		if r := runCLI(t, "", args...); r.code != exitOK || !strings.Contains(r.stdout, "usage: tlswatch db") {
			t.Errorf("%v: %d %q", args, r.code, r.stdout)
		}
	}
}
