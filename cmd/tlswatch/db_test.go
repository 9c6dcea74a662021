package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/owner"
)

// db stats and db compact on a database that watch add wrote: done by the
// command itself, and, while a serve owns the file, by that serve.
func TestDBStatsAndCompact(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(t.TempDir(), "tlswatch.db")
	target := l.serve(t, testlab.LeafOpts{})
	if r := runCLI(t, "", "watch", "add", target, "--ip", "127.0.0.1", "--db", db, "--ca-file", l.caFile); r.code != exitOK {
		t.Fatalf("watch add: %d %s", r.code, r.stderr)
	}
	stats := func(want string) {
		t.Helper()
		r := runCLI(t, "", "db", "stats", "--json", "--db", db)
		var u store.Usage
		if err := json.Unmarshal([]byte(r.stdout), &u); r.code != exitOK || err != nil || u.Watches != 1 || u.Samples != 1 || u.Changes != 1 || !strings.HasPrefix(u.Retention, want) {
			t.Errorf("db stats --json: %d %+v %v %q", r.code, u, err, r.stderr)
		}
	}
	stats("raw=30d,")
	if r := runCLI(t, "", "db", "stats", "--db", db); r.code != exitOK || !strings.Contains(r.stdout, "1 watches") {
		t.Errorf("db stats: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "db", "compact", "--db", db); r.code != exitOK || !strings.Contains(r.stdout, "compacted") {
		t.Errorf("db compact: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// A serve owns the file (with its own retention): it answers both.
	m, err := owner.Open(context.Background(), owner.Config{DBPath: db, Engine: watch.Config{NoScheduler: true},
		Store: store.Options{Retention: store.Retention{Raw: 7 * 24 * time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	stats("raw=7d,")
	if r := runCLI(t, "", "db", "compact", "--db", db); r.code != exitOK || !strings.Contains(r.stdout, "compacted") {
		t.Errorf("db compact through the owner: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "db", "shrink", "--db", db); r.code != exitUnknown || !strings.Contains(r.stderr, "stats, compact") {
		t.Errorf("unknown subcommand: %d %q", r.code, r.stderr)
	}
}
