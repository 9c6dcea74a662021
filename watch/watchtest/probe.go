package watchtest

import (
	"context"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
)

// Days left on the certificate Probe reports, by the start of the host's
// first label.
const (
	HealthyDays = 41 // any other host
	SoonDays    = 5  // "soon..."
	ExpiredDays = -3 // "expired...": down (untrusted), certificate kept
)

// Probe is a canned watch.ProbeFunc that needs no network: the Report
// depends on the host ("down..." is refused, "expired..." expired three
// days ago, "soon..." expires in five days, anything else is healthy for
// 41 days) and on opts.Now; the leaf fingerprint is the host's.
func Probe(_ context.Context, t probe.Target, o probe.Options) (probe.Report, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	r := probe.Report{
		Target:      probe.TargetInfo{Host: t.Host, Port: t.Port, SNI: t.SNI, IP: t.IP},
		CheckedAt:   now,
		Status:      probe.StatusOK,
		Reachable:   true,
		Trusted:     true,
		ExpiryStage: probe.StageNone,
		Findings:    []probe.Finding{},
		TLS:         &probe.TLSInfo{Version: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256"},
		Chain:       &probe.ChainInfo{Served: 2, Complete: true, VerifiedPath: []string{"leaf", "ca"}},
		Timing:      probe.Timing{Total: 1},
	}
	days := HealthyDays
	switch {
	case strings.HasPrefix(t.Host, "down"):
		r.Reachable, r.Trusted, r.Status, r.TLS, r.Chain = false, false, probe.StatusDown, nil, nil
		r.Findings = []probe.Finding{probe.NewFinding(probe.CodeConnectionRefused, "connection refused")}
		return r, nil
	case strings.HasPrefix(t.Host, "expired"):
		days = ExpiredDays
		r.Trusted, r.Status = false, probe.StatusDown
		r.Findings = []probe.Finding{probe.NewFinding(probe.CodeExpired, "certificate expired 3 days ago")}
	case strings.HasPrefix(t.Host, "soon"):
		days = SoonDays
		r.Status = probe.StatusCritical
		r.Findings = []probe.Finding{probe.NewFinding(probe.CodeExpiringSoon, "certificate expires in 5 days")}
	}
	notAfter := now.Add(time.Duration(days)*24*time.Hour + time.Hour)
	notBefore := notAfter.AddDate(0, 0, -90) // a 90-day certificate, as ACME CAs issue
	r.ExpiryStage = probe.ExpiryStage(probe.Validity{NotBefore: notBefore, NotAfter: notAfter}, now, o.Thresholds)
	r.Leaf = &probe.CertInfo{Subject: "CN=" + t.Host, Issuer: "CN=Test CA", SANs: []string{t.Host},
		NotBefore: notBefore, NotAfter: notAfter, DaysRemaining: probe.DaysRemaining(notAfter, now),
		Serial: "01", SHA256: "fp-" + t.Host, Key: "ECDSA P-256", SignatureAlgorithm: "ECDSA-SHA256"}
	return r, nil
}

// MCP is a canned watch.MCPFunc for the MCP level of Probe's Reports: a
// host starting with "notmcp" answers TLS but not MCP; a reachable one
// otherwise is a small MCP server with two tools. No network either.
func MCP(_ context.Context, t probe.Target, rep probe.Report, _ mcpcheck.Options) probe.Report {
	switch {
	case !rep.Reachable:
	case strings.HasPrefix(t.Host, "notmcp"):
		rep.Findings = append(rep.Findings, probe.NewFinding(probe.CodeNotMCP, "TLS works, but the URL does not speak MCP: HTTP 404"))
		rep.Status = probe.StatusOf(rep)
	default:
		rep.MCP = &probe.MCPInfo{ProtocolVersion: "2025-11-25", Server: probe.MCPServer{Name: "canned", Version: "1"},
			ToolCount: 2, ToolsHash: "sha256:canned", LatencyMS: 5,
			Tools: []probe.MCPTool{{Name: "echo", Digest: "0000000000000001"}, {Name: "sum", Digest: "0000000000000002"}}}
	}
	return rep
}
