package watch_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// mcpSpec watches a lab MCP server at the MCP level.
func mcpSpec(lab *testlab.MCPServer, schedule string) watch.Spec {
	return watch.Spec{Target: lab.URL, IP: "127.0.0.1", TimeoutMS: 5000, Schedule: schedule, MCP: true}
}

// eventOf returns the first recorded event of kind whose message contains
// detail, with its Change.
func eventOf(e *env, kind, detail string) (watch.Change, watch.Event, bool) {
	for _, c := range e.rec.Changes() {
		for _, ev := range c.Events {
			if ev.Kind == kind && strings.Contains(ev.Message, detail) {
				return c, ev, true
			}
		}
	}
	return watch.Change{}, watch.Event{}, false
}

// A live MCP server whose tool list changes between two probes of an
// MCP-level watch: that probe's Change carries mcp_tools_changed with what
// was added, removed and changed, its Report the finding, the alert feed
// the entry, and the record's mcp follows the server. The next probe of
// the same list, after a restart too, is no event.
func TestMCPWatchToolsChanged(t *testing.T) {
	p := testlab.NewPKI(t)
	lab := testlab.ServeMCP(t, p, "drift", "echo", "fetch", "search")
	e := newEnv(t, watch.Config{Prober: labProber(p, nil)}, p.Now)
	w, err := e.eng.Add(ctxT(t), mcpSpec(lab, "@every 1m"))
	if err != nil {
		t.Fatal(err)
	}
	first := w.MCP
	if w.State != watch.StateUp || first == nil || first.ProtocolVersion != "2025-11-25" || first.Server != (probe.MCPServer{Name: "drift", Version: "1.0.0"}) ||
		first.ToolCount != 3 || !strings.HasPrefix(first.ToolsHash, "sha256:") || first.LatencyMS <= 0 || first.Tools != nil {
		t.Fatalf("after Add: state %s, mcp %+v, findings %v", w.State, first, w.LastReport.Findings)
	}
	if r := w.LastReport; r.MCP == nil || r.MCP.ToolsHash != first.ToolsHash || hasCode(r, probe.CodeMCPToolsChanged) {
		t.Errorf("first Report: mcp %+v findings %v", r.MCP, r.Findings)
	}

	lab.DeleteTools("fetch")
	lab.AddTool(mcp.NewTool("search", mcp.WithDescription("search"), mcp.WithString("q", mcp.Required())), testlab.EchoTool)
	lab.AddTool(mcp.NewTool("delete_everything", mcp.WithDescription("new")), testlab.EchoTool)
	e.settle(time.Minute, "the tools event", func() bool { return e.rec.Count(watch.EventToolsChanged, "") > 0 })
	c, ev, _ := eventOf(e, watch.EventToolsChanged, "")
	want := probe.ToolsChange{Added: []string{"delete_everything"}, Removed: []string{"fetch"}, Changed: []string{"search"}}
	if ev.Tools == nil || fmt.Sprint(*ev.Tools) != fmt.Sprint(want) || ev.Level != watch.LevelWarning ||
		!strings.Contains(ev.Message, "added delete_everything; removed fetch; changed search") {
		t.Errorf("event %+v (tools %+v)", ev, ev.Tools)
	}
	if m := c.Watch.MCP; m == nil || m.ToolsHash == first.ToolsHash || m.ToolCount != 3 {
		t.Errorf("record mcp after the change: %+v", m)
	}
	if r := c.Watch.LastReport; !hasCode(r, probe.CodeMCPToolsChanged) || r.Status != probe.StatusWarning {
		t.Errorf("Report of the change: status %s findings %v", r.Status, r.Findings)
	}
	feed, err := e.eng.Alerts(ctxT(t), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(feed.Alerts, func(a watch.AlertEntry) bool { return a.Kind == watch.EventToolsChanged })
	if i < 0 || feed.Alerts[i].ToolsChanged == nil || fmt.Sprint(*feed.Alerts[i].ToolsChanged) != fmt.Sprint(want) || feed.Alerts[i].WatchID != w.ID {
		t.Fatalf("alert feed: %+v", feed.Alerts)
	}

	// Unchanged since: no event, and the finding leaves the latest Report.
	e.restart()
	probes := e.get(w.ID).MCPStats.Probes
	e.settle(time.Minute, "a probe after the restart", func() bool { return e.get(w.ID).MCPStats.Probes > probes })
	g := e.get(w.ID)
	if n := e.rec.Count(watch.EventToolsChanged, ""); n != 0 || hasCode(g.LastReport, probe.CodeMCPToolsChanged) || g.LastReport.Status != probe.StatusOK {
		t.Errorf("after a restart: %d tools events, report %s %v", n, g.LastReport.Status, g.LastReport.Findings)
	}
	if s := g.MCPStats; s.Uptime != 1 || s.LatencyMSP50 == nil || *s.LatencyMSP95 < *s.LatencyMSP50 || !s.Since.Equal(p.Now) {
		t.Errorf("mcp_stats %+v", s)
	}
}

// An endpoint that goes on answering TLS but stops answering MCP counts as
// a failed probe: the watch goes down after the failure threshold, with
// not_mcp as the reason, and up again once MCP answers.
func TestMCPWatchDownWhenNotMCP(t *testing.T) {
	p := testlab.NewPKI(t)
	lab := testlab.ServeMCP(t, p, "fragile", "echo")
	e := newEnv(t, watch.Config{Prober: labProber(p, nil)}, p.Now)
	w, err := e.eng.Add(ctxT(t), mcpSpec(lab, "@every 1m"))
	if err != nil || w.State != watch.StateUp {
		t.Fatalf("Add: %v %+v", err, w)
	}
	lab.StopMCP()
	e.settle(time.Minute, "the down event", func() bool { return e.rec.Count(watch.EventStatusChanged, "is down") == 1 })
	down, ev, _ := eventOf(e, watch.EventStatusChanged, "is down")
	r := down.Watch.LastReport
	if down.Watch.State != watch.StateDown || down.Watch.ConsecutiveFailures != watch.DefaultFailureThreshold || ev.Level != watch.LevelCritical ||
		!r.Reachable || !r.Trusted || r.MCP != nil || !hasCode(r, probe.CodeNotMCP) || !strings.Contains(ev.Message, "not_mcp") {
		t.Errorf("down: state %s failures %d, report reachable %v trusted %v mcp %v findings %v; %s %q", down.Watch.State, down.Watch.ConsecutiveFailures,
			r.Reachable, r.Trusted, r.MCP, r.Findings, ev.Level, ev.Message)
	}
	if n := e.rec.Count(watch.EventStatusChanged, "probe failed (1 of 3 before down): not_mcp"); n != 1 {
		t.Errorf("first failure events: %d (%v)", n, e.rec.Events())
	}
	if m := down.Watch.MCP; m == nil || m.Server.Name != "fragile" {
		t.Errorf("the record forgot the server last seen: %+v", m)
	}
	if s := down.Watch.MCPStats; s == nil || s.Probes != 4 || s.Uptime != 0.25 {
		t.Errorf("mcp_stats when down: %+v", s)
	}
	lab.StartMCP()
	e.settle(time.Minute, "the up event", func() bool { return e.rec.Count(watch.EventStatusChanged, "up again") == 1 })
	if g := e.get(w.ID); g.State != watch.StateUp || g.ConsecutiveFailures != 0 {
		t.Errorf("after MCP answers again: %s, %d failures", g.State, g.ConsecutiveFailures)
	}
}

// A protected endpoint: the watch names a token, which the probing process
// resolves and sends only to a verified endpoint; the token is in neither
// the record, the Report nor the file. A process without that token probes
// without it, and the endpoint's 401 counts as a failure.
func TestMCPWatchToken(t *testing.T) {
	const secret = "s3cret-token-value"
	p := testlab.NewPKI(t)
	lab := testlab.ServeMCP(t, p, "guarded", "echo")
	lab.RequireBearer(secret)
	pr := labProber(p, nil)
	pr.Tokens = map[string]string{"prod": secret}
	e := newEnv(t, watch.Config{Prober: pr}, p.Now)
	spec := mcpSpec(lab, "@every 1m")
	spec.TokenName = "prod"
	w, err := e.eng.Add(ctxT(t), spec)
	if err != nil || w.MCP == nil || w.State != watch.StateUp || w.TokenName != "prod" {
		t.Fatalf("Add with the token: %v, mcp %+v, state %s", err, w.MCP, w.State)
	}
	e.close()
	raw, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) {
		t.Error("the token is in the database file")
	}

	// Another process, without that token.
	e.cfg.Prober = labProber(p, nil)
	e.open()
	e.settle(time.Minute, "a failed probe", func() bool { return e.get(w.ID).ConsecutiveFailures > 0 })
	if g := e.get(w.ID); !hasCode(g.LastReport, probe.CodeMCPAuthRequired) || g.LastReport.MCP != nil {
		t.Errorf("without the token: %v", g.LastReport.Findings)
	}
	// The 401 is only info on the Report (beside no_sct), but it is why
	// the probe failed, and the event says so.
	e.settle(time.Minute, "the failure event", func() bool { return e.rec.Count(watch.EventStatusChanged, "probe failed") > 0 })
	if n := e.rec.Count(watch.EventStatusChanged, "probe failed (1 of 3 before down): mcp_auth_required: "); n != 1 {
		t.Errorf("failure events: %v", e.rec.Events())
	}

	// An endpoint whose certificate does not verify never gets the token.
	seen := lab.AuthorizationsSeen()
	untrusted := labProber(p, nil)
	untrusted.Base.Roots = testlab.NewPKI(t).Roots() // another lab's root only
	untrusted.Tokens = map[string]string{"prod": secret}
	e.close()
	e.cfg.Prober = untrusted
	e.open()
	e.settle(time.Minute, "a probe that does not verify", func() bool {
		r := e.get(w.ID).LastReport
		return r != nil && !r.Trusted
	})
	if n := lab.AuthorizationsSeen(); n != seen {
		t.Errorf("%d requests carried the token to an unverified endpoint", n-seen)
	}
}
