package e2e

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// writeClientCert issues a client certificate (with its intermediate) that
// expires in 5 days and writes it and its key as PEM files; it returns the
// --client-cert value NAME=CERT,KEY.
func writeClientCert(t *testing.T, l *lab, name string) string {
	t.Helper()
	c := l.pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "e2e-agent", DNSNames: []string{"e2e-agent.example"},
		NotAfter: l.pki.Now.Add(5 * 24 * time.Hour)})
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(l.dir, name+".crt")
	keyFile := filepath.Join(l.dir, name+".key")
	if err := os.WriteFile(certFile, []byte(testlab.ChainPEM(c)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return name + "=" + certFile + "," + keyFile
}

func findingCodes(r map[string]any) map[string]string {
	out := map[string]string{}
	fs, _ := r["findings"].([]any)
	for _, f := range fs {
		f := f.(map[string]any)
		out[f["code"].(string)], _ = f["severity"].(string)
	}
	return out
}

// TestClientCertMTLS (mTLS): the operator loads a client
// certificate with --client-cert NAME=CERT,KEY; check_tls, inspect_chain
// and watch_endpoint present it by name to a server that requires one, and
// its own 5-day expiry is reported as client_cert_expiring. Without it the
// server's demand is client_cert_required; an unknown name is an isError
// naming client_cert.
func TestClientCertMTLS(t *testing.T) {
	l := newLab(t)
	sc := testlab.Start(t, l.pki, testlab.ScenarioClientCertRequired)
	target := hostTarget(sc.Addr)
	spec := writeClientCert(t, l, "agent")
	c := stdioClient(t, legacyVersion, l.serveArgs("--client-cert", spec))

	res := call(t, c, "check_tls", map[string]any{"target": target, "ip": "127.0.0.1"})
	if res.IsError {
		t.Fatalf("check_tls without client_cert: %s", text(res))
	}
	without := structured(t, res)
	if _, ok := findingCodes(without)["client_cert_required"]; !ok {
		t.Errorf("without client_cert: no client_cert_required: %s", text(res))
	}
	if _, ok := findingCodes(without)["client_cert_expiring"]; ok {
		t.Errorf("without client_cert: client_cert_expiring reported: %s", text(res))
	}

	res = call(t, c, "check_tls", map[string]any{"target": target, "ip": "127.0.0.1", "client_cert": "agent"})
	if res.IsError {
		t.Fatalf("check_tls with client_cert: %s", text(res))
	}
	with := structured(t, res)
	checkMTLSReport(t, "check_tls", with)

	res = call(t, c, "inspect_chain", map[string]any{"target": target, "ip": "127.0.0.1", "client_cert": "agent"})
	if res.IsError {
		t.Fatalf("inspect_chain with client_cert: %s", text(res))
	}
	checkMTLSReport(t, "inspect_chain", structured(t, res))

	for _, tool := range []string{"check_tls", "inspect_chain", "watch_endpoint"} {
		res = call(t, c, tool, map[string]any{"target": target, "ip": "127.0.0.1", "client_cert": "/etc/passwd"})
		if !res.IsError || !strings.HasPrefix(text(res), "client_cert:") {
			t.Errorf("%s with an unknown client_cert: isError=%v %q", tool, res.IsError, text(res))
		}
	}

	// A watch stores the name, and its scheduled probes present the
	// certificate too.
	res = call(t, c, "watch_endpoint", map[string]any{"target": target, "ip": "127.0.0.1", "client_cert": "agent", "schedule": "@every 1s"})
	if res.IsError {
		t.Fatalf("watch_endpoint with client_cert: %s", text(res))
	}
	w := structured(t, res)
	if w["client_cert"] != "agent" {
		t.Errorf("watch client_cert = %v", w["client_cert"])
	}
	rep, _ := w["last_report"].(map[string]any)
	checkMTLSReport(t, "watch_endpoint", rep)
	id := w["id"].(string)
	since := time.Now()
	waitProbed(t, c, id, since, 10*time.Second)
	for _, x := range structured(t, call(t, c, "list_watches", map[string]any{}))["watches"].([]any) {
		if x := x.(map[string]any); x["id"] == id {
			rep, _ := x["last_report"].(map[string]any)
			checkMTLSReport(t, "scheduled probe", rep)
			if x["state"] != "up" {
				t.Errorf("watch with client_cert: state %v", x["state"])
			}
		}
	}

	// The CLI takes the same flag.
	out, code := runCheckCLI(t, l, "check", target, "--ip", "127.0.0.1", "--json", "--client-cert", spec)
	var cli map[string]any
	if err := json.Unmarshal(out, &cli); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	checkMTLSReport(t, "tlswatch check", cli)
	if code != 2 {
		t.Errorf("tlswatch check with a client certificate 5 days from expiry: exit %d, want 2 (critical)", code)
	}
	_, code = runCheckCLI(t, l, "check", target, "--client-cert", "agent=/nonexistent.crt,/nonexistent.key")
	if code != 3 {
		t.Errorf("tlswatch check with unreadable --client-cert: exit %d, want 3", code)
	}
}

// checkMTLSReport: the handshake with the client certificate completed and
// its 5-day expiry is critical.
func checkMTLSReport(t *testing.T, what string, r map[string]any) {
	t.Helper()
	if r["reachable"] != true || r["trusted"] != true {
		t.Errorf("%s with client_cert: reachable=%v trusted=%v findings=%v", what, r["reachable"], r["trusted"], r["findings"])
	}
	if sev, ok := findingCodes(r)["client_cert_expiring"]; !ok || sev != "critical" {
		t.Errorf("%s with a client certificate 5 days from expiry: client_cert_expiring=%q (present %v); findings %v", what, sev, ok, r["findings"])
	}
	if r["status"] != "critical" {
		t.Errorf("%s: status %v, want critical", what, r["status"])
	}
}

// runCheckCLI runs the binary (not over MCP) and returns stdout and the
// exit code.
func runCheckCLI(t *testing.T, l *lab, args ...string) ([]byte, int) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--ca-file", l.caFile)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	return out, 0
}
