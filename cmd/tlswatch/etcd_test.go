package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/cluster/etcdstore"
	"github.com/tlswatch/tlswatch/internal/etcdlab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/watch"
)

func TestMain(m *testing.M) {
	code := m.Run()
	etcdlab.StopShared()
	os.Exit(code)
}

// An embedded database moves into etcd with migrate, once; watch add, ls,
// rm and expiring then work there with --etcd, as on a --db.
func TestEtcdCommands(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(t.TempDir(), "tlswatch.db")
	soon := l.serve(t, testlab.LeafOpts{NotAfter: l.days(5)})
	fine := l.serve(t, testlab.LeafOpts{})
	other := l.serve(t, testlab.LeafOpts{})
	etcd := []string{"--etcd", etcdlab.Shared().Endpoint, "--etcd-prefix", etcdlab.Prefix(t), "--ca-file", l.caFile}
	cli := func(args ...string) result {
		t.Helper()
		r := runCLI(t, "", args...)
		if r.code != exitOK {
			t.Fatalf("%v: code %d, stderr %q", args, r.code, r.stderr)
		}
		return r
	}
	var added watch.Watch
	json.Unmarshal([]byte(cli("watch", "add", soon, "--ip", "127.0.0.1", "--db", db, "--ca-file", l.caFile, "--json").stdout), &added)
	cli("watch", "add", fine, "--ip", "127.0.0.1", "--db", db, "--ca-file", l.caFile)

	var stats etcdstore.MigrateStats
	json.Unmarshal([]byte(cli(append([]string{"migrate", "--from-db", db, "--json"}, etcd...)...).stdout), &stats)
	if stats.Watches != 2 || stats.Reports != 2 || stats.Feed < 2 || len(stats.Skipped) != 0 {
		t.Errorf("migrate: %+v", stats)
	}
	if r := cli(append([]string{"migrate", "--from-db", db}, etcd...)...); !strings.Contains(r.stdout, "moved 0 watches") || !strings.Contains(r.stdout, "skipped 2") {
		t.Errorf("migrate twice: %s", r.stdout)
	}

	var ls watchesJSON
	json.Unmarshal([]byte(cli(append([]string{"watch", "ls", "--json"}, etcd...)...).stdout), &ls)
	if len(ls.Watches) != 2 || ls.Watches[0].LastReport == nil || ls.Watches[1].LastReport == nil {
		t.Fatalf("watch ls --etcd after migrate: %+v", ls)
	}
	cli(append([]string{"watch", "add", other, "--ip", "127.0.0.1"}, etcd...)...)
	var exp watch.ExpiringList
	json.Unmarshal([]byte(cli(append([]string{"expiring", "--json"}, etcd...)...).stdout), &exp)
	if len(exp.Watches) != 1 || exp.Watches[0].ID != added.ID || exp.Watches[0].LastReport.ExpiryStage != "7d" {
		t.Errorf("expiring --etcd: %+v", exp)
	}
	cli(append([]string{"watch", "rm", added.ID}, etcd...)...)
	ls = watchesJSON{}
	json.Unmarshal([]byte(cli(append([]string{"watch", "ls", "--json"}, etcd...)...).stdout), &ls)
	if len(ls.Watches) != 2 {
		t.Errorf("after rm: %d watches, want 2", len(ls.Watches))
	}
}

// The etcd flags name themselves when they are wrong.
func TestEtcdBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "ls", "--etcd", "nope"}, "--etcd"},
		{[]string{"watch", "ls", "--etcd", "ftp://h:1"}, "--etcd"},
		{[]string{"watch", "ls", "--etcd-prefix", "/x/"}, "--etcd-prefix: needs --etcd"},
		{[]string{"watch", "ls", "--etcd", "127.0.0.1:1", "--etcd-prefix", "x"}, "--etcd-prefix"},
		{[]string{"serve", "--node", "n1"}, "--node: needs --etcd"},
		{[]string{"serve", "--etcd", "127.0.0.1:1", "--node", "a/b"}, "--node"},
		{[]string{"migrate", "--etcd", "127.0.0.1:1"}, "--from-db: required"},
		{[]string{"migrate", "--from-db", "x.db"}, "--etcd: required"},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			wantBadInput(t, runCLI(t, "", tc.args...), tc.want)
		})
	}
}
