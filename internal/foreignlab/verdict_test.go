package foreignlab_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/foreignlab"
	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
)

// The verdict harness: each case starts a foreign server, probes it the
// way an agent's check_tls call would, and compares the Report with the
// verdict an expert (SSL Labs, testssl.sh) gives, written down before
// tlswatch ever ran against the case.

// Finding codes of the contract's additions that the probe package may not
// define yet; the verdicts name them by their stable strings.
const (
	crit = probe.SeverityCritical
	warn = probe.SeverityWarning
	info = probe.SeverityInfo
)

// noRootAdvice matches advice to add a root: wrong when the operator already
// gave the root with --ca-file (naming that root is fine).
const noRootAdvice = `(?i)add (it|that CA('s root)?|the root|a root)|root with --ca-file|--ca-file PATH`

// F is a set of findings by code with the severity each must have.
type F map[string]probe.Severity

// verdict is the expected outcome of one case.
//
// Findings is exact for what moves the status: every warning and critical
// finding of the Report must be listed, and every listed finding must be
// there with that severity. Info findings that are not listed are
// tolerated (no_sct comes with every lab certificate: no lab CA logs to
// CT), unless Absent names them.
type verdict struct {
	Status    probe.Status
	Reachable bool
	Trusted   bool
	Findings  F
	// Absent are codes that must not appear at any severity: the
	// tempting wrong diagnoses of the case.
	Absent []string
	Facts  []fact
	Checks []check
}

// fact is a statement about the message of a finding: it must match
// (or, with Not, must not match) the regular expression.
type fact struct {
	Code string
	Re   string
	Not  bool
}

func has(code, re string) fact   { return fact{Code: code, Re: re} }
func lacks(code, re string) fact { return fact{Code: code, Re: re, Not: true} }

// check is a statement about the rest of the Report; it returns what
// differs, "" when nothing does. js is the Report's JSON as the CLI and
// check_tls print it (for fields this module may not declare yet).
type check func(r probe.Report, js map[string]any) string

// endpoint is a running case: where to connect and as whom.
type endpoint struct {
	Addr       string // 127.0.0.1:port
	Host       string // the name probed; default testlab.DefaultHost
	Scheme     string // STARTTLS scheme ("imap"); "" for direct TLS
	ClientCert *tls.Certificate
	// CustomRoots: the trusted root was given with --ca-file (rather
	// than installed in the configured store).
	CustomRoots bool
	Timeout     time.Duration
	Server      *foreignlab.Server // nil for raw sockets
}

// labCase is one row of the table.
type labCase struct {
	Name  string // stack/case
	Deep  bool
	Serve func(t *testing.T, p *testlab.PKI) endpoint
	Want  verdict
}

// targetOf is the raw target an agent would type for ep.
func targetOf(ep endpoint) string {
	host := ep.Host
	if host == "" {
		host = testlab.DefaultHost
	}
	_, port, _ := net.SplitHostPort(ep.Addr)
	raw := net.JoinHostPort(host, port)
	if ep.Scheme != "" {
		raw = ep.Scheme + "://" + raw
	}
	return raw
}

// probeCase runs probe.Run against ep as check_tls would, trusting the
// lab's root.
func probeCase(t *testing.T, p *testlab.PKI, ep endpoint, deep bool) probe.Report {
	t.Helper()
	ip, _, _ := net.SplitHostPort(ep.Addr)
	timeout := ep.Timeout
	if timeout == 0 {
		timeout = 15 * time.Second // deep scans of one-connection-at-a-time servers
	}
	tgt, err := probe.ParseTarget(targetOf(ep), ip, "", int(timeout/time.Millisecond))
	if err != nil {
		t.Fatalf("target %q: %v", targetOf(ep), err)
	}
	opts := probe.Options{Now: p.Now, Roots: p.Roots(), Deep: deep, ClientCert: ep.ClientCert}
	if ep.CustomRoots {
		opts.CustomRoots = p.Roots()
	}
	r, err := probe.Run(context.Background(), tgt, opts)
	if err != nil {
		t.Fatalf("probe.Run: %v", err)
	}
	return r
}

// mismatches compares a Report with the verdict and returns every
// difference as "what: expected X, got Y".
func (v verdict) mismatches(r probe.Report, js map[string]any) []string {
	var out []string
	if r.Status != v.Status {
		out = append(out, fmt.Sprintf("status: expected %s, got %s", v.Status, r.Status))
	}
	if r.Reachable != v.Reachable {
		out = append(out, fmt.Sprintf("reachable: expected %t, got %t", v.Reachable, r.Reachable))
	}
	if r.Trusted != v.Trusted {
		out = append(out, fmt.Sprintf("trusted: expected %t, got %t", v.Trusted, r.Trusted))
	}
	got := map[string]probe.Finding{}
	for _, f := range r.Findings {
		if _, dup := got[f.Code]; !dup {
			got[f.Code] = f
		}
	}
	for _, code := range sortedKeys(v.Findings) {
		sev := v.Findings[code]
		switch f, ok := got[code]; {
		case !ok:
			out = append(out, fmt.Sprintf("%s: expected %s, got none", code, sev))
		case f.Severity != sev:
			out = append(out, fmt.Sprintf("%s: expected %s, got %s (%s)", code, sev, f.Severity, f.Message))
		}
	}
	for _, f := range r.Findings {
		if _, listed := v.Findings[f.Code]; !listed && f.Severity != info {
			out = append(out, fmt.Sprintf("%s: expected none, got %s (%s)", f.Code, f.Severity, f.Message))
		}
	}
	for _, code := range v.Absent {
		// Warning and critical ones are reported by the rule above.
		if f, ok := got[code]; ok && f.Severity == info {
			out = append(out, fmt.Sprintf("%s: expected none, got %s (%s)", code, f.Severity, f.Message))
		}
	}
	for _, fa := range v.Facts {
		f, ok := got[fa.Code]
		if !ok {
			continue // its absence is reported above
		}
		if regexp.MustCompile(fa.Re).MatchString(f.Message) == fa.Not {
			verb := "to match"
			if fa.Not {
				verb = "not to match"
			}
			out = append(out, fmt.Sprintf("%s message: expected %s /%s/, got %q", fa.Code, verb, fa.Re, f.Message))
		}
	}
	for _, c := range v.Checks {
		if d := c(r, js); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// verify fails the test with every mismatch, one per line, and what the
// probe and the server said.
func (v verdict) verify(t *testing.T, name string, r probe.Report, ep endpoint) {
	t.Helper()
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("marshal report: %v", err)
	}
	v.verifyJSON(t, name, raw, ep)
}

// verifyJSON is verify for a Report as JSON (what the CLI prints).
func (v verdict) verifyJSON(t *testing.T, name string, raw []byte, ep endpoint) {
	t.Helper()
	var r probe.Report
	var js map[string]any
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s: report is not JSON: %v\n%s", name, err, raw)
	}
	json.Unmarshal(raw, &js)
	ms := v.mismatches(r, js)
	if len(ms) == 0 {
		t.Logf("%s: status=%s reachable=%t trusted=%t findings=%s", name, r.Status, r.Reachable, r.Trusted, findingList(r))
		return
	}
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "MISMATCH %s: %s\n", name, m)
	}
	fmt.Fprintf(&b, "report: status=%s reachable=%t trusted=%t findings=%s\n", r.Status, r.Reachable, r.Trusted, findingList(r))
	if ep.Server != nil {
		b.WriteString(ep.Server.Logs())
	}
	t.Error(b.String())
}

func findingList(r probe.Report) string {
	var fs []string
	for _, f := range r.Findings {
		fs = append(fs, f.Code+"/"+string(f.Severity))
	}
	return "[" + strings.Join(fs, " ") + "]"
}

func sortedKeys(m F) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Checks on the rest of the Report.

func tlsVersion(want string) check {
	return func(r probe.Report, _ map[string]any) string {
		if r.TLS == nil || r.TLS.Version != want {
			return fmt.Sprintf("tls.version: expected %s, got %v", want, tlsField(r, func(t *probe.TLSInfo) string { return t.Version }))
		}
		return ""
	}
}

func alpn(want string) check {
	return func(r probe.Report, _ map[string]any) string {
		if r.TLS == nil || r.TLS.ALPN != want {
			return fmt.Sprintf("tls.alpn: expected %q, got %v", want, tlsField(r, func(t *probe.TLSInfo) string { return t.ALPN }))
		}
		return ""
	}
}

func stapled(want bool) check {
	return func(r probe.Report, _ map[string]any) string {
		if r.TLS == nil || r.TLS.OCSPStapled != want {
			return fmt.Sprintf("tls.ocsp_stapled: expected %t, got %v", want, tlsField(r, func(t *probe.TLSInfo) string { return fmt.Sprint(t.OCSPStapled) }))
		}
		return ""
	}
}

func tlsField(r probe.Report, get func(*probe.TLSInfo) string) string {
	if r.TLS == nil {
		return "no tls block"
	}
	return get(r.TLS)
}

func chainComplete(want bool) check {
	return func(r probe.Report, _ map[string]any) string {
		if r.Chain == nil || r.Chain.Complete != want {
			got := "no chain block"
			if r.Chain != nil {
				got = fmt.Sprint(r.Chain.Complete)
			}
			return fmt.Sprintf("chain.complete: expected %t, got %s", want, got)
		}
		return ""
	}
}

func stage(want string) check {
	return func(r probe.Report, _ map[string]any) string {
		if string(r.ExpiryStage) != want {
			return fmt.Sprintf("expiry_stage: expected %s, got %s", want, r.ExpiryStage)
		}
		return ""
	}
}

// leafFor: the certificate served is the one for name (SNI routing).
func leafFor(name string) check {
	return func(r probe.Report, _ map[string]any) string {
		if r.Leaf == nil || !slices.Contains(r.Leaf.SANs, name) {
			got := "no leaf"
			if r.Leaf != nil {
				got = strings.Join(r.Leaf.SANs, ",")
			}
			return fmt.Sprintf("leaf.sans: expected %s, got %s", name, got)
		}
		return ""
	}
}

// targetScheme: the Report's target says which protocol was spoken, so
// imap://host:143 and host:143 do not look the same.
func targetScheme(want string) check {
	return func(_ probe.Report, js map[string]any) string {
		tgt, _ := js["target"].(map[string]any)
		if got, _ := tgt["scheme"].(string); got != want {
			return fmt.Sprintf("target.scheme: expected %q, got %q", want, got)
		}
		return ""
	}
}

// cipherAccepted: the deep scan lists a suite whose name contains sub.
func cipherAccepted(sub string) check {
	return func(r probe.Report, _ map[string]any) string {
		for _, c := range r.CipherSuites {
			if strings.Contains(c.Name, sub) {
				return ""
			}
		}
		return fmt.Sprintf("cipher_suites: expected one with %s, got %d suites", sub, len(r.CipherSuites))
	}
}
