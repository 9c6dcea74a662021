package foreignlab_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/foreignlab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// buildFlags are the flags of the tlswatch build: -race under the race
// detector (race_test.go), so that the build reuses the test's compiled
// packages and a race in the CLI fails too.
var buildFlags []string

// buildTLSWatch builds cmd/tlswatch into dir.
func buildTLSWatch(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tlswatch")
	args := append(append([]string{"build"}, buildFlags...), "-o", bin, "github.com/tlswatch/tlswatch/cmd/tlswatch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build tlswatch: %v\n%s", err, out)
	}
	return bin
}

// cliCase is a case of the table run through `tlswatch check --json`
// with the lab's root given as --ca-file, as a person would.
type cliCase struct {
	Case       string // a case of the table, for its server
	ClientCert bool   // pass the case's client certificate with --client-cert
	Exit       int    // 0 ok, 1 warning, 2 critical or down
	Want       verdict
}

// The lab's root comes from --ca-file, in no public store: every chain
// trusted thanks to it alone gets untrusted_elsewhere as info (agents
// without the private root fail, but the operator chose that root), so a
// healthy private server stays ok.
func cliCases() []cliCase {
	elsewhere := F{probe.CodeUntrustedElsewhere: info}
	return []cliCase{
		{Case: "nginx/healthy", Exit: 0, Want: verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: elsewhere,
			Facts: []fact{has(probe.CodeUntrustedElsewhere, "ca-file")}, Checks: []check{tlsVersion("TLS 1.3"), alpn("h2")}}},
		{Case: "nginx/missing-intermediate-no-aia", Exit: 2, Want: verdict{Status: probe.StatusDown, Reachable: true, Trusted: false,
			Findings: F{probe.CodeIncompleteChain: crit}, Absent: []string{probe.CodeUntrustedRoot, probe.CodeUntrustedElsewhere},
			Facts: []fact{lacks(probe.CodeIncompleteChain, noRootAdvice)}}},
		{Case: "openssl/client-cert-rejected-tls13", ClientCert: true, Exit: 2, Want: verdict{Status: probe.StatusCritical, Reachable: true, Trusted: true,
			Findings: F{probe.CodeClientCertRejected: crit, probe.CodeUntrustedElsewhere: info}, Absent: []string{probe.CodeHandshakeFailed}}},
		{Case: "raw/reset", Exit: 2, Want: verdict{Status: probe.StatusDown, Reachable: true, Trusted: false,
			Findings: F{probe.CodeConnectionReset: crit}, Absent: []string{probe.CodeConnectionRefused}}},
		{Case: "dovecot/starttls", Exit: 0, Want: verdict{Status: probe.StatusOK, Reachable: true, Trusted: true, Findings: elsewhere,
			Checks: []check{targetScheme("imap"), tlsVersion("TLS 1.3")}}},
	}
}

// TestForeignCLI: the built binary gives the table's verdicts and the
// monitoring-plugin exit codes.
func TestForeignCLI(t *testing.T) {
	dir := t.TempDir()
	bin := buildTLSWatch(t, dir)
	byName := map[string]labCase{}
	for _, c := range cases() {
		byName[c.Name] = c
	}
	for _, cc := range cliCases() {
		t.Run(cc.Case, func(t *testing.T) {
			t.Parallel()
			lc, ok := byName[cc.Case]
			if !ok {
				t.Fatalf("no case %q in the table", cc.Case)
			}
			p := testlab.NewPKI(t)
			ep := lc.Serve(t, p)
			args := []string{"check", targetOf(ep), "--ip", "127.0.0.1", "--ca-file", p.WriteRootPEM(t), "--json", "--timeout", "15s"}
			if cc.ClientCert {
				crt, key := foreignlab.WriteCertFiles(t, t.TempDir(), "agent", *ep.ClientCert)
				args = append(args, "--client-cert", "agent="+crt+","+key)
			}
			stdout, stderr, code := runTLSWatch(t, bin, args...)
			if code != cc.Exit {
				t.Errorf("MISMATCH cli %s: exit code: expected %d, got %d (stderr %q)", cc.Case, cc.Exit, code, stderr)
			}
			cc.Want.verifyJSON(t, "cli "+cc.Case, stdout, ep)
		})
	}
}

// runTLSWatch runs the binary with a private state directory and no
// inherited trust configuration.
func runTLSWatch(t *testing.T, bin string, args ...string) (stdout []byte, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "TLSWATCH_CA_FILE=", "XDG_STATE_HOME="+t.TempDir(), "NO_COLOR=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run tlswatch: %v", err)
	}
	return out.Bytes(), errb.String(), code
}
