package tools

import (
	"fmt"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// reportSummary is the one-line text of a Report:
// "mcp.example.com:443 — status down: expired (certificate expired 3 days ago)".
func reportSummary(r probe.Report, fallback string) string {
	label := targetLabel(r.Target, fallback)
	var b strings.Builder
	fmt.Fprintf(&b, "%s — status %s", label, r.Status)
	top, more := topFindings(r.Findings)
	switch {
	case top != nil && (top.Severity != probe.SeverityInfo || r.Status != probe.StatusOK):
		fmt.Fprintf(&b, ": %s (%s)", top.Code, top.Message)
		if more > 0 {
			fmt.Fprintf(&b, "; %d more finding%s", more, plural(more))
		}
	case r.Leaf != nil:
		fmt.Fprintf(&b, ": trusted certificate, %d day%s remaining (until %s)",
			r.Leaf.DaysRemaining, plural(r.Leaf.DaysRemaining), r.Leaf.NotAfter.UTC().Format("2006-01-02"))
		if r.TLS != nil && r.TLS.Version != "" {
			fmt.Fprintf(&b, ", %s", r.TLS.Version)
		}
	}
	return b.String()
}

// topFindings returns the most severe finding (first of its rank) and how
// many other warning or critical findings there are.
func topFindings(fs []probe.Finding) (*probe.Finding, int) {
	var top *probe.Finding
	for i := range fs {
		if top == nil || fs[i].Severity.Rank() > top.Severity.Rank() {
			top = &fs[i]
		}
	}
	more := 0
	for i := range fs {
		if &fs[i] != top && fs[i].Severity.Rank() >= probe.SeverityWarning.Rank() {
			more++
		}
	}
	return top, more
}

func plural(n int) string {
	if n == 1 || n == -1 {
		return ""
	}
	return "s"
}

// watchSummary is the one-line text of a watch.
func watchSummary(w watch.Watch) string {
	var b strings.Builder
	fmt.Fprintf(&b, "watch %s on %s (%s): state %s", w.ID, targetLabel(w.Target, w.ID), w.Schedule, w.State)
	if w.LastReport != nil {
		fmt.Fprintf(&b, "; last probe: %s", reportSummary(*w.LastReport, ""))
	}
	if m := w.MCP; m != nil {
		fmt.Fprintf(&b, "; MCP server %s", m.Server.Name)
		if m.Server.Version != "" {
			fmt.Fprintf(&b, " %s", m.Server.Version)
		}
		fmt.Fprintf(&b, ", protocol %s, %d tool%s (%s)", m.ProtocolVersion, m.ToolCount, plural(m.ToolCount), m.ToolsHash)
	}
	if s := w.MCPStats; s != nil {
		fmt.Fprintf(&b, "; uptime %.1f%% over the last %d probe%s", 100*s.Uptime, s.Probes, plural(s.Probes))
		if s.LatencyMSP50 != nil {
			fmt.Fprintf(&b, ", initialize p50 %.0f ms, p95 %.0f ms", *s.LatencyMSP50, *s.LatencyMSP95)
		}
	}
	return b.String()
}

// watchesSummary counts watches by state: "3 watches: 2 up, 1 down".
func watchesSummary(ws []watch.Watch, empty string) string {
	if len(ws) == 0 {
		return empty
	}
	counts := map[string]int{}
	var order []string
	for _, w := range ws {
		if counts[w.State] == 0 {
			order = append(order, w.State)
		}
		counts[w.State]++
	}
	parts := make([]string, 0, len(order))
	for _, s := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	noun := "watches"
	if len(ws) == 1 {
		noun = "watch"
	}
	lines := []string{fmt.Sprintf("%d %s: %s", len(ws), noun, strings.Join(parts, ", "))}
	const maxLines = 20
	for i, w := range ws {
		if i == maxLines {
			lines = append(lines, fmt.Sprintf("… and %d more", len(ws)-maxLines))
			break
		}
		line := fmt.Sprintf("- %s %s: %s", w.ID, targetLabel(w.Target, w.ID), w.State)
		if w.LastReport != nil {
			line += ", last status " + string(w.LastReport.Status)
			if w.LastReport.Leaf != nil {
				line += fmt.Sprintf(", %d days remaining", w.LastReport.Leaf.DaysRemaining)
			}
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
