package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// targetFlags are the target fields of DESIGN.md as flags.
type targetFlags struct {
	ip, sni, timeout string
}

func addTargetFlags(fs *flag.FlagSet) *targetFlags {
	tf := &targetFlags{}
	fs.StringVar(&tf.ip, "ip", "", "dial this `IP` instead of resolving the host (SNI and name checks still use the host)")
	fs.StringVar(&tf.sni, "sni", "", "server `name` to send, when it differs from the host")
	fs.StringVar(&tf.timeout, "timeout", "", "whole-probe deadline, a Go `duration` such as 3s or 3000ms (default 10s, max 60s)")
	return tf
}

// target parses raw with the flags into a probe.Target.
func (tf *targetFlags) target(raw string) (probe.Target, error) {
	timeoutMS, err := timeoutMillis(tf.timeout)
	if err != nil {
		return probe.Target{}, err
	}
	t, err := probe.ParseTarget(raw, tf.ip, tf.sni, timeoutMS)
	return t, flagNames(err)
}

// timeoutMillis turns --timeout (a Go duration) into the timeout_ms field of
// the target; "" means the default (0).
func timeoutMillis(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	d, err := parseDuration("--timeout", s)
	if err != nil {
		return 0, err
	}
	if d < time.Millisecond || d > probe.MaxTimeout {
		return 0, fmt.Errorf("--timeout: %s out of range 1ms-%s", s, probe.MaxTimeout)
	}
	return int(d / time.Millisecond), nil
}

// flagOf maps the fields that probe and watch name in a *probe.FieldError
// (the MCP argument names) to the flags of the command line.
var flagOf = map[string]string{
	"ip": "--ip", "sni": "--sni", "timeout_ms": "--timeout",
	"schedule": "--schedule", "thresholds_days": "--thresholds", "within_days": "--within",
	"ca_pem": "--ca-file", "client_cert": "--client-cert", "mcp": "--mcp",
	"max_watches": "--max-watches", "max_watches_per_subject": "--max-watches-per-subject",
}

// flagNames rewrites a *probe.FieldError so that it names the flag a person
// typed ("--timeout" rather than "timeout_ms").
func flagNames(err error) error {
	var fe *probe.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	if n, ok := flagOf[fe.Field]; ok {
		return &probe.FieldError{Field: n, Reason: fe.Reason}
	}
	return err
}

func runCheck(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("check", c)
	tf := addTargetFlags(fs)
	asJSON := fs.Bool("json", false, "print the Report as JSON")
	deep := fs.Bool("deep", false, "also enumerate accepted cipher suites per TLS version and the certificate served without SNI (many more handshakes)")
	noRevocation := fs.Bool("no-revocation", false, "skip the online OCSP/CRL check (the stapled response is still read)")
	noARI := fs.Bool("no-ari", false, "do not ask the certificate's CA for its renewal window (ACME ARI)")
	noCAA := fs.Bool("no-caa", false, "do not look up the CAA records that the next renewal must pass")
	singleAddress := fs.Bool("single-address", false, "probe only the first resolved address, not every A/AAAA record")
	var clientCerts stringList
	fs.Var(&clientCerts, "client-cert", "present this mTLS client certificate when the server asks for one, and check its expiry: `NAME=CERT,KEY` (PEM files)")
	raw, err := c.parse(fs, args, "target: missing (usage: tlswatch check TARGET)")
	if err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(false)
	if err != nil {
		return exitUnknown, err
	}
	t, err := tf.target(raw)
	if err != nil {
		return exitUnknown, err
	}
	if len(clientCerts) > 1 {
		return exitUnknown, errors.New("--client-cert: check presents one client certificate; give the flag once")
	}
	cfg.ClientCerts = clientCerts
	opts, certs, err := probeSetup(cfg)
	if err != nil {
		return exitUnknown, err
	}
	opts.Deep, opts.NoRevocation, opts.SingleAddress = *deep, *noRevocation, *singleAddress
	opts.NoARI, opts.NoCAA = *noARI, *noCAA
	for _, c := range certs {
		opts.ClientCert, opts.ClientCertName = &c.Pair, c.Name
	}
	rep, err := probe.Run(ctx, t, opts)
	if err != nil {
		return exitUnknown, flagNames(err)
	}
	if ctx.Err() != nil {
		return exitUnknown, errors.New("check: interrupted")
	}
	if *asJSON {
		if err := writeJSON(c.stdout, rep); err != nil {
			return exitUnknown, err
		}
	} else {
		writeReport(c.stdout, rep, colorFor(c.stdout))
	}
	return exitCode(rep.Status), nil
}

// exitCode maps a status to the monitoring-plugin exit code.
func exitCode(s probe.Status) int {
	switch s {
	case probe.StatusOK:
		return exitOK
	case probe.StatusWarning:
		return exitWarning
	case probe.StatusCritical, probe.StatusDown:
		return exitCritical
	}
	return exitUnknown
}

// writeJSON prints v as one indented JSON object.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sortedFindings returns the findings, most severe first, stable otherwise.
func sortedFindings(fs []probe.Finding) []probe.Finding {
	out := append([]probe.Finding(nil), fs...)
	probe.SortFindings(out)
	return out
}

// writeFindings prints the findings, most severe first, each with what to
// do.
func writeFindings(p *printer, findings []probe.Finding, pal palette) {
	if len(findings) == 0 {
		return
	}
	p.section("Findings")
	for _, f := range sortedFindings(findings) {
		title := f.Code
		if info, ok := probe.Codes[f.Code]; ok && info.Title != "" {
			title = f.Code + " (" + info.Title + ")"
		}
		p.line("  %s %s", pal.severity(f.Severity), title)
		if f.Message != "" {
			p.line("    %s", f.Message)
		}
		if fix := probe.Codes[f.Code].Fix; fix != "" && f.Severity.Rank() > 0 {
			p.line("    %s %s", pal.dim("fix:"), fix)
		}
	}
}

// writeReport prints the report a person reads: status first, then findings
// with what to do, then certificate, chain, TLS and timing.
func writeReport(w io.Writer, r probe.Report, pal palette) {
	p := &printer{w: w}
	p.line("%s  %s", pal.status(r.Status), targetLabel(r.Target))
	p.line("%s", verdict(r))

	writeFindings(p, r.Findings, pal)

	if l := r.Leaf; l != nil {
		p.section("Certificate")
		p.field("subject", l.Subject)
		p.field("issuer", l.Issuer)
		p.field("SANs", strings.Join(l.SANs, ", "))
		p.field("valid", fmt.Sprintf("%s to %s", day(l.NotBefore), day(l.NotAfter)))
		p.field("remaining", lifetime(l, r.CheckedAt))
		p.field("lifetime", lifeProgress(r))
		if ri := r.RenewalInfo; ri != nil {
			p.field("renewal", renewalWindowText(ri))
		}
		p.field("key", l.Key)
		p.field("signature", l.SignatureAlgorithm)
		p.field("serial", l.Serial)
		p.field("sha256", l.SHA256)
	}

	if ch := r.Chain; ch != nil {
		p.section("Chain")
		complete := "yes"
		if !ch.Complete {
			complete = "no"
		}
		p.field("served", fmt.Sprintf("%d certificate%s, complete: %s", ch.Served, plural(ch.Served), complete))
		if len(ch.VerifiedPath) > 0 {
			p.field("verified", strings.Join(ch.VerifiedPath, "\n               → "))
		} else {
			p.field("verified", "no path to a trusted root")
		}
		if e := ch.EarliestNotAfter; e != nil && r.Leaf != nil && e.Before(r.Leaf.NotAfter) {
			p.field("chain dies", day(*e)+", before the leaf")
		}
	}

	if t := r.TLS; t != nil {
		p.section("TLS")
		p.field("version", t.Version)
		p.field("cipher", t.CipherSuite)
		alpn := t.ALPN
		if alpn == "" {
			alpn = "none"
		}
		p.field("ALPN", alpn)
		stapled := "no"
		if t.OCSPStapled {
			stapled = "yes"
		}
		p.field("OCSP staple", stapled)
	}
	if len(r.Protocols) > 0 {
		p.field("protocols", protocolsText(r.Protocols))
	}
	if rv := r.Revocation; rv != nil {
		text := rv.Status
		if rv.Method != "" && rv.Method != "none" {
			text += " via " + rv.Method
		}
		if rv.Error != "" {
			text += ": " + rv.Error
		}
		p.field("revocation", text)
	}

	p.section("Timing")
	tm := r.Timing
	p.line("  dns %s  connect %s  handshake %s  total %s", ms(tm.DNS), ms(tm.Connect), ms(tm.Handshake), ms(tm.Total))
}

// protocolsText lists the versions tested: "TLS 1.3, TLS 1.2 accepted; TLS 1.1, TLS 1.0 refused".
func protocolsText(ps []probe.ProtocolInfo) string {
	var yes, no []string
	for _, v := range ps {
		switch {
		case !v.Tested:
		case v.Accepted:
			yes = append(yes, v.Version)
		default:
			no = append(no, v.Version)
		}
	}
	var parts []string
	if len(yes) > 0 {
		parts = append(parts, strings.Join(yes, ", ")+" accepted")
	}
	if len(no) > 0 {
		parts = append(parts, strings.Join(no, ", ")+" refused")
	}
	return strings.Join(parts, "; ")
}

// verdict is the one-line explanation under the status.
func verdict(r probe.Report) string {
	var parts []string
	switch {
	case !r.Reachable:
		parts = append(parts, "not reachable: no TLS handshake completed")
	case !r.Trusted:
		parts = append(parts, "reachable but not trusted: agents will refuse to connect")
	default:
		parts = append(parts, "reachable and trusted")
	}
	if r.Leaf != nil {
		part := "certificate " + lifetime(r.Leaf, r.CheckedAt)
		if lp := lifeProgress(r); lp != "" {
			part += " (" + lp + ")"
		}
		parts = append(parts, part)
	}
	n := 0
	for _, f := range r.Findings {
		if f.Severity.Rank() >= probe.SeverityWarning.Rank() {
			n++
		}
	}
	if n > 0 {
		parts = append(parts, fmt.Sprintf("%d problem%s", n, plural(n)))
	}
	return strings.Join(parts, "; ")
}

func targetLabel(t probe.TargetInfo) string {
	s := t.String()
	var extra []string
	if t.IP != "" && t.IP != t.Host {
		extra = append(extra, "ip "+t.IP)
	}
	if t.SNI != "" && t.SNI != t.Host {
		extra = append(extra, "sni "+t.SNI)
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s
}

// lifetime says how long the leaf has left, or how long ago it expired, in
// the Report's own days_remaining (whole days, rounded down) so that text
// and JSON agree; under a day it counts hours to not_after.
func lifetime(l *probe.CertInfo, at time.Time) string {
	switch d := l.DaysRemaining; {
	case d < -1:
		return fmt.Sprintf("expired %d days ago", -d)
	case d == -1 || l.NotAfter.Before(at):
		return "expired within the last day"
	case d >= 1:
		return fmt.Sprintf("expires in %d day%s", d, plural(d))
	}
	h := int(l.NotAfter.Sub(at) / time.Hour)
	if h < 1 {
		return "expires within the hour"
	}
	return fmt.Sprintf("expires in %d hour%s", h, plural(h))
}

// lifeProgress says where the leaf is in its lifetime, as in "day 7 of 9,
// renewal overdue"; empty outside its validity.
func lifeProgress(r probe.Report) string {
	l := r.Leaf
	if l == nil || l.NotBefore.IsZero() || r.CheckedAt.Before(l.NotBefore) || r.CheckedAt.After(l.NotAfter) {
		return ""
	}
	s := probe.LifetimeProgress(probe.Validity{NotBefore: l.NotBefore, NotAfter: l.NotAfter}, r.CheckedAt)
	for _, f := range r.Findings {
		switch f.Code {
		case probe.CodeRenewalOverdue:
			s += ", renewal overdue"
		case probe.CodeRenewalSuggested:
			s += ", the CA asks for renewal now"
		}
	}
	return s
}

// renewalWindowText is the CA's suggested renewal window, or why it is
// unknown.
func renewalWindowText(ri *probe.RenewalInfo) string {
	if ri.Error != "" || ri.WindowStart == nil || ri.WindowEnd == nil {
		return ri.CA + " window unknown: " + ri.Error
	}
	return fmt.Sprintf("%s suggests %s to %s", ri.CA, day(*ri.WindowStart), day(*ri.WindowEnd))
}

func day(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format("2006-01-02 15:04 MST")
}

func ms(v float64) string { return fmt.Sprintf("%.1fms", v) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// printer writes the report's lines; errors are the writer's to keep.
type printer struct{ w io.Writer }

func (p *printer) line(format string, a ...any) { fmt.Fprintf(p.w, format+"\n", a...) }

func (p *printer) section(name string) { fmt.Fprintf(p.w, "\n%s\n", name) }

func (p *printer) field(name, value string) {
	if value == "" {
		value = "-"
	}
	fmt.Fprintf(p.w, "  %-12s %s\n", name, value)
}
