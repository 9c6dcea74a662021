package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// The exit-code table of DESIGN.md, against real loopback servers.
func TestCheckExitCodes(t *testing.T) {
	l := newLab(t)
	okTarget := l.serve(t, testlab.LeafOpts{})
	soon := l.serve(t, testlab.LeafOpts{NotAfter: l.days(10)})
	expired := l.serve(t, testlab.LeafOpts{NotBefore: l.pki.Now.Add(-100 * 24 * time.Hour), NotAfter: l.pki.Now.Add(-48 * time.Hour)})
	refused := testlab.RefusedAddr(t)

	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"ok", []string{"check", okTarget, "--ip", "127.0.0.1"}, exitOK},
		{"expiring in 10 days", []string{"check", soon, "--ip", "127.0.0.1"}, exitWarning},
		{"expired", []string{"check", expired, "--ip", "127.0.0.1"}, exitCritical},
		{"refused", []string{"check", refused, "--timeout", "5s"}, exitCritical},
		{"bad target", []string{"check", "tlswatch.test:70000"}, exitUnknown},
		{"bad timeout", []string{"check", okTarget, "--ip", "127.0.0.1", "--timeout", "abc"}, exitUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, "", append(tc.args, "--ca-file", l.caFile)...)
			if r.code != tc.want {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr: %s", r.code, tc.want, r.stdout, r.stderr)
			}
			if tc.want != exitUnknown && r.stderr != "" {
				t.Errorf("stderr %q, want nothing", r.stderr)
			}
		})
	}
}

func TestCheckTextReport(t *testing.T) {
	l := newLab(t)
	target := l.serve(t, testlab.LeafOpts{NotAfter: l.days(10), DNSNames: []string{testlab.DefaultHost, "alt.tlswatch.test"}})
	r := runCLI(t, "", "check", target, "--ip", "127.0.0.1", "--ca-file", l.caFile)
	if r.code != exitWarning {
		t.Fatalf("exit code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	out := r.stdout
	if !strings.HasPrefix(out, "WARNING  "+target) {
		t.Errorf("report does not start with the status and target:\n%s", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes in output that is not a terminal:\n%q", out)
	}
	// The findings come with what to do, from the code table.
	for _, want := range []string{
		"Findings", "WARNING  expiring_soon", probe.Codes[probe.CodeExpiringSoon].Fix,
		"Certificate", "subject", "CN=" + testlab.DefaultHost, "alt.tlswatch.test", "expires in 10 days",
		"Chain", "served", "tlswatch Test Intermediate CA", "tlswatch Test Root CA",
		"TLS", "version", "TLS 1.3", "cipher",
		"Timing", "handshake",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Sections in the order a person reads them.
	last := -1
	for _, sec := range []string{"\nFindings\n", "\nCertificate\n", "\nChain\n", "\nTLS\n", "\nTiming\n"} {
		i := strings.Index(out, sec)
		if i < last {
			t.Errorf("section %q out of order:\n%s", strings.TrimSpace(sec), out)
		}
		last = i
	}
}

// An expired certificate still shows its dates and how long ago it expired.
func TestCheckTextExpired(t *testing.T) {
	l := newLab(t)
	target := l.serve(t, testlab.LeafOpts{NotBefore: l.pki.Now.Add(-100 * 24 * time.Hour), NotAfter: l.pki.Now.Add(-78 * time.Hour)})
	r := runCLI(t, "", "check", target, "--ip", "127.0.0.1", "--ca-file", l.caFile)
	if r.code != exitCritical {
		t.Fatalf("exit code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	for _, want := range []string{"CRITICAL expired", probe.Codes[probe.CodeExpired].Fix, "expired 4 days ago"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stdout)
		}
	}
	// Most severe first.
	if i, j := strings.Index(r.stdout, "CRITICAL"), strings.Index(r.stdout, "INFO"); j >= 0 && j < i {
		t.Errorf("an info finding comes before a critical one:\n%s", r.stdout)
	}
}

// --json prints exactly the Report: one indented object with the contract's
// field names.
func TestCheckJSON(t *testing.T) {
	l := newLab(t)
	target := l.serve(t, testlab.LeafOpts{})
	r := runCLI(t, "", "check", "--json", target, "--ip", "127.0.0.1", "--ca-file", l.caFile)
	if r.code != exitOK {
		t.Fatalf("exit code %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var rep probe.Report
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("not a Report: %v\n%s", err, r.stdout)
	}
	if dec.More() {
		t.Errorf("more than one JSON value on stdout:\n%s", r.stdout)
	}
	if rep.Status != probe.StatusOK || !rep.Reachable || !rep.Trusted || rep.Target.Host != testlab.DefaultHost || rep.Target.IP != "127.0.0.1" {
		t.Errorf("report: %+v", rep)
	}
	// The lab root reaches the probe as a --ca-file root: a chain that only
	// it anchors is said to be trusted nowhere else (info).
	if f := findingOf(rep, probe.CodeUntrustedElsewhere); f == nil || f.Severity != probe.SeverityInfo || !strings.Contains(f.Message, "--ca-file") {
		t.Errorf("untrusted_elsewhere: %+v in %v", f, rep.Findings)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"target", "checked_at", "status", "reachable", "trusted", "expiry_stage", "findings", "tls", "leaf", "chain", "timing_ms"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if !strings.HasPrefix(r.stdout, "{\n  \"") {
		t.Errorf("JSON is not indented:\n%.80s", r.stdout)
	}
}

func TestExitCodeOfStatus(t *testing.T) {
	for s, want := range map[probe.Status]int{
		probe.StatusOK: 0, probe.StatusWarning: 1, probe.StatusCritical: 2, probe.StatusDown: 2, "": 3,
	} {
		if got := exitCode(s); got != want {
			t.Errorf("exitCode(%q) = %d, want %d", s, got, want)
		}
	}
}

func findingOf(r probe.Report, code string) *probe.Finding {
	for i := range r.Findings {
		if r.Findings[i].Code == code {
			return &r.Findings[i]
		}
	}
	return nil
}
