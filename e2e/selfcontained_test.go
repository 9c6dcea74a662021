package e2e

import (
	"crypto/tls"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// runCLI runs the binary with args and returns stdout, stderr and the exit
// code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// cliJSON runs the binary and decodes its --json output.
func cliJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out, errOut, code := runCLI(t, append(args, "--json")...)
	var m map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("tlswatch %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return m
}

// waitProbedTrusted waits until the watch has been probed by the server
// since after, and returns it.
func waitProbedTrusted(t *testing.T, c *client.Client, id string, after time.Time) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, w := range structured(t, call(t, c, "list_watches", map[string]any{}))["watches"].([]any) {
			w := w.(map[string]any)
			checked, _ := time.Parse(time.RFC3339Nano, asString(w["last_checked_at"]))
			if w["id"] == id && checked.After(after) {
				return w
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch %s not probed by the server within 20s", id)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func asString(v any) string { s, _ := v.(string); return s }

// checkTrusted fails unless the watch's last probe was trusted and up.
func checkTrusted(t *testing.T, what string, w map[string]any) {
	t.Helper()
	rep, _ := w["last_report"].(map[string]any)
	if w["state"] != "up" || rep["trusted"] != true || rep["status"] != "ok" || hasFinding(rep, "untrusted_root") {
		t.Errorf("%s: state %v, report trusted %v status %v findings %v", what, w["state"], rep["trusted"], rep["status"], rep["findings"])
	}
}

// A watch added with `tlswatch watch add --ca-file` keeps the root: a
// `tlswatch serve` started without --ca-file probes it trusted.
func TestWatchAddCAFileServeWithout(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(l.dir, "tlswatch.db")
	w := cliJSON(t, "watch", "add", l.valid, "--ip", "127.0.0.1", "--schedule", "@every 1s", "--db", db, "--ca-file", l.caFile)
	checkTrusted(t, "watch add", w)
	roots, _ := w["ca_roots"].([]any)
	if len(roots) != 1 || !strings.Contains(asString(roots[0].(map[string]any)["subject"]), l.pki.Root.Cert.Subject.CommonName) {
		t.Errorf("ca_roots of the watch: %v", w["ca_roots"])
	}
	added, _ := time.Parse(time.RFC3339Nano, asString(w["last_checked_at"]))
	c := stdioClient(t, legacyVersion, []string{"serve", "--db", db})
	checkTrusted(t, "serve without --ca-file", waitProbedTrusted(t, c, asString(w["id"]), added))
}

// The same through watch_endpoint's ca_pem, across a restart of serve
// (no --ca-file either time); a watch without ca_pem on that server is
// untrusted, so the server itself really lacks the root.
func TestWatchEndpointCAPEM(t *testing.T) {
	l := newLab(t)
	args := []string{"serve", "--db", filepath.Join(l.dir, "tlswatch.db")}
	c := stdioClient(t, legacyVersion, args)
	res := call(t, c, "watch_endpoint", map[string]any{"target": l.valid, "ip": "127.0.0.1", "schedule": "@every 1s", "ca_pem": l.pki.Root.PEM()})
	if res.IsError {
		t.Fatalf("watch_endpoint: %s", text(res))
	}
	w := structured(t, res)
	checkTrusted(t, "watch_endpoint with ca_pem", w)
	plain := call(t, c, "watch_endpoint", map[string]any{"target": hostTarget(l.rotating.Addr), "ip": "127.0.0.1"})
	if rep := structured(t, plain)["last_report"].(map[string]any); rep["trusted"] != false || !hasFinding(rep, "untrusted_root") {
		t.Fatalf("a watch without ca_pem: %v", rep)
	}
	if res := call(t, c, "watch_endpoint", map[string]any{"target": l.valid, "ca_pem": "not a certificate"}); !res.IsError || !strings.HasPrefix(text(res), "ca_pem: ") {
		t.Errorf("bad ca_pem: isError %v %q", res.IsError, text(res))
	}
	c.Close()
	added, _ := time.Parse(time.RFC3339Nano, asString(w["last_checked_at"]))
	c2 := stdioClient(t, legacyVersion, args)
	checkTrusted(t, "after a restart", waitProbedTrusted(t, c2, asString(w["id"]), added))
}

// expiringHosts lists the target hosts of a list_expiring answer.
func expiringHosts(t *testing.T, l map[string]any, wantDays float64) []string {
	t.Helper()
	if l["within_days"] != wantDays {
		t.Errorf("within_days %v, want %v", l["within_days"], wantDays)
	}
	var hosts []string
	for _, w := range l["watches"].([]any) {
		hosts = append(hosts, asString(w.(map[string]any)["target"].(map[string]any)["host"]))
	}
	return hosts
}

// within_days 0 (and `tlswatch expiring --within 0`) lists only what is at
// or past expiry; no window means 30 days.
func TestExpiringWithinZero(t *testing.T) {
	l := newLab(t)
	db := filepath.Join(l.dir, "tlswatch.db")
	expired := l.pki.Leaf(testlab.LeafOpts{DNSNames: []string{"expired." + testlab.DefaultHost},
		NotBefore: l.pki.Now.Add(-90 * 24 * time.Hour), NotAfter: l.pki.Now.Add(-2 * 24 * time.Hour)})
	expiredAddr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{expired}})
	_, port, _ := strings.Cut(expiredAddr, ":")
	cliJSON(t, "watch", "add", "expired."+testlab.DefaultHost+":"+port, "--ip", "127.0.0.1", "--db", db, "--ca-file", l.caFile)
	cliJSON(t, "watch", "add", hostTarget(l.rotating.Addr), "--ip", "127.0.0.1", "--db", db, "--ca-file", l.caFile)

	soon, gone := testlab.DefaultHost, "expired."+testlab.DefaultHost
	if got := expiringHosts(t, cliJSON(t, "expiring", "--within", "0", "--db", db), 0); strings.Join(got, ",") != gone {
		t.Errorf("expiring --within 0: %v, want only %s", got, gone)
	}
	if got := expiringHosts(t, cliJSON(t, "expiring", "--db", db), 30); strings.Join(got, ",") != gone+","+soon {
		t.Errorf("expiring: %v, want %s then %s", got, gone, soon)
	}
	c := stdioClient(t, legacyVersion, []string{"serve", "--db", db})
	if got := expiringHosts(t, structured(t, call(t, c, "list_expiring", map[string]any{"within_days": 0})), 0); strings.Join(got, ",") != gone {
		t.Errorf("list_expiring within_days 0: %v, want only %s", got, gone)
	}
	if got := expiringHosts(t, structured(t, call(t, c, "list_expiring", map[string]any{})), 30); len(got) != 2 {
		t.Errorf("list_expiring: %v, want both", got)
	}
}
