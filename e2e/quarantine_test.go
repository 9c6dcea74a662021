package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// TestQuarantineThroughTheBinary: three watches added with the command
// line, one record then made undecodable by hand. serve sets it aside
// (logging its id), lists the other two, and keeps probing them on their
// one-second schedule; the bad one's server hears nothing; db check lists
// the quarantined record.
func TestQuarantineThroughTheBinary(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(l.dir, "tlswatch.db")
	type srv struct {
		addr  string
		dials *atomic.Int64
		id    string
	}
	var srvs []*srv
	for range 3 {
		addr, n := countingTLS(t, l)
		s := &srv{addr: addr, dials: n}
		o := runBinary(t, "", "watch", "add", hostTarget(addr), "--ip", "127.0.0.1", "--schedule", "@every 1s",
			"--ca-file", l.caFile, "--db", db, "--json")
		if o.code != 0 {
			t.Fatalf("watch add: %d %s", o.code, o.stderr)
		}
		s.id = jsonField(t, o.stdout, "id")
		srvs = append(srvs, s)
	}
	bad := srvs[1]
	corrupt(t, db, bad.id)

	p := startServe(t, l.serveArgs("--backup-every", "0"))
	if !waitLog(p, "id="+bad.id, 10*time.Second) {
		t.Fatalf("serve did not log the quarantined id %s:\n%s", bad.id, p.logs.String())
	}
	c, err := p.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := callTool(ctx, c, "list_watches", map[string]any{})
	if err != nil {
		t.Fatalf("list_watches: %v", err)
	}
	ws, _ := out["watches"].([]any)
	if len(ws) != 2 || strings.Contains(jsonText(t, out), bad.id) {
		t.Fatalf("list_watches after the quarantine: %s", jsonText(t, out))
	}
	before := []int64{srvs[0].dials.Load(), bad.dials.Load(), srvs[2].dials.Load()}
	deadline := time.Now().Add(20 * time.Second)
	for srvs[0].dials.Load() < before[0]+3 || srvs[2].dials.Load() < before[2]+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the other watches are not probed: dials %d→%d and %d→%d", before[0], srvs[0].dials.Load(), before[2], srvs[2].dials.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := bad.dials.Load(); n != before[1] {
		t.Errorf("the quarantined watch's server was dialled %d more times", n-before[1])
	}
	c.Close()
	p.stop(t)
	o := runBinary(t, "", "db", "check", "--db", db)
	if o.code != 1 || !strings.Contains(o.stdout, "watch "+bad.id+": quarantined") || !strings.Contains(o.stdout, "2 watches") {
		t.Errorf("db check after the quarantine: exit %d\n%s%s", o.code, o.stdout, o.stderr)
	}
}

// corrupt overwrites the record of id with bytes the decoder refuses.
func corrupt(t *testing.T, path, id string) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("watches")).Put([]byte(id), []byte{1, 0x7f, 0xff})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitLog waits for serve to log s.
func waitLog(p *serveProc, s string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for !strings.Contains(p.logs.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// TestSquattedOwnerSocket: with a serve owning the database, something
// else takes <db>.sock and never answers. `tlswatch watch ls` says so in one
// line within seconds (never waits out a 45 s deadline); once the squatter
// is gone and serve stopped, it owns the database itself.
func TestSquattedOwnerSocket(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(l.dir, "tlswatch.db")
	p := startServe(t, l.serveArgs("--backup-every", "0"))
	sock := db + ".sock"
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("serve has no socket: %v", err)
	}
	stopSquat := testlab.Squat(t, sock, nil)
	start := time.Now()
	o := runBinary(t, "", "watch", "ls", "--db", db)
	took := time.Since(start)
	lines := strings.Split(strings.TrimSpace(o.stderr), "\n")
	if o.code != 3 || len(lines) != 1 || !strings.Contains(o.stderr, "is not a tlswatch owner's socket") || took > 5*time.Second {
		t.Fatalf("watch ls through a squatted socket: exit %d after %v:\n%s", o.code, took, o.stderr)
	}
	t.Logf("refused after %v: %s", took.Round(time.Millisecond), lines[0])
	stopSquat()
	p.stop(t)
	if o := runBinary(t, "", "watch", "ls", "--db", db); o.code != 0 {
		t.Errorf("watch ls with the socket free: exit %d %s", o.code, o.stderr)
	}
}

// jsonField is one string field of a JSON object.
func jsonField(t *testing.T, doc, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("%v: %.300s", err, doc)
	}
	s, _ := m[field].(string)
	return s
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
