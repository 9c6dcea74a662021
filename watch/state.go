package watch

import (
	"fmt"
	"time"

	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// outcome is what one probe result does to a watch.
type outcome struct {
	rec        store.Record
	events     []Event
	transition bool         // keep the report among the transitions
	alert      *store.Alert // alert state to persist with the record
}

// alertLookup returns the remembered alert state of a certificate of this
// watch (a rotation back to a certificate seen before must not re-fire).
type alertLookup func(fingerprint string) (store.Alert, bool)

// evaluate is the watcher's state machine (DESIGN.md "Watcher rules"). It is a
// pure function of the previous record and the new report so it can be tested
// without I/O; the caller persists the outcome before publishing its events.
// What only the watch's past can tell (an MCP tool list that changed since
// the previous probe) it adds to rep as a finding.
func evaluate(prev store.Record, rep *probe.Report, now time.Time, lookup alertLookup) outcome {
	rec := prev
	at := rep.CheckedAt
	if at.IsZero() {
		at = now
	}
	rec.LastCheckedAt = at
	rec.UpdatedAt = now
	// A probe fails when no agent could connect: TLS down, or, on an
	// MCP-level watch, an endpoint that answers TLS but not MCP. failure
	// says why ("" for a success).
	var failure string
	if rep.Status == probe.StatusDown {
		failure = reason(rep)
	}
	before := rep.Status
	var toolsEv *Event
	if prev.MCP {
		toolsEv = mcpLevel(prev, &rec, rep, at)
		if rep.MCP == nil && failure == "" {
			failure = mcpReason(rep)
		}
	}
	rec.LastStatus = string(rep.Status)
	var out outcome
	statusEv := upDown(prev, &rec, rep, failure)
	if toolsEv != nil && rec.State == prev.State && string(before) == prev.LastStatus {
		// The status moved only because of the tools finding: the tools
		// event says so, and a second alert for the same cause is noise.
		statusEv = nil
	}
	out.transition = statusEv != nil || toolsEv != nil || prev.LastCheckedAt.IsZero()
	var rotEv, stageEv *Event
	if rep.Leaf != nil && rep.Leaf.SHA256 != "" {
		rotEv, stageEv = certificate(prev, &rec, rep, at, lookup, &out)
	}
	for _, ev := range []*Event{rotEv, statusEv, stageEv, toolsEv} {
		if ev != nil {
			out.events = append(out.events, *ev)
		}
	}
	out.rec = rec
	return out
}

// mcpLevel follows the MCP level of an MCP-level watch: the probe joins
// the recent window (uptime, latency percentiles); a server that answered
// becomes the record's MCP info; a tool list unlike the previous one is an
// event and an mcp_tools_changed finding on rep. The first list, and a list
// seen again after failed probes unchanged, are no event.
func mcpLevel(prev store.Record, rec *store.Record, rep *probe.Report, at time.Time) *Event {
	obs := rep.MCP
	p := store.RecentProbe{At: at, OK: obs != nil && rep.Status != probe.StatusDown}
	if obs != nil {
		p.LatencyMS = obs.LatencyMS
	}
	rec.MCPRecent = appendRecent(prev.MCPRecent, p)
	if obs == nil {
		return nil
	}
	info := *obs
	info.Tools = nil
	rec.MCPInfo, rec.MCPTools = &info, obs.Tools
	old := prev.MCPInfo
	if old == nil || old.ToolsHash == obs.ToolsHash {
		return nil
	}
	change := mcpcheck.DiffTools(prev.MCPTools, obs.Tools)
	what := change.String()
	if change.Empty() {
		what = "the tools hash changed" // duplicated names listed differently
	}
	f := probe.NewFinding(probe.CodeMCPToolsChanged,
		fmt.Sprintf("the tool list changed since the previous probe (%d -> %d tools): %s", old.ToolCount, obs.ToolCount, what))
	rep.Findings = append(rep.Findings, f)
	probe.SortFindings(rep.Findings)
	rep.Status = probe.StatusOf(*rep)
	return &Event{Kind: EventToolsChanged, Level: string(f.Severity), Tools: &change,
		Message: fmt.Sprintf("%s: MCP tools changed (%d -> %d tools, %s): %s", targetName(prev.Target), old.ToolCount, obs.ToolCount, obs.ToolsHash, what)}
}

// appendRecent adds p to the recent window, dropping the oldest beyond
// MCPRecentKeep. The window is copied: records in memory share nothing.
func appendRecent(w []store.RecentProbe, p store.RecentProbe) []store.RecentProbe {
	if len(w) >= MCPRecentKeep {
		w = w[len(w)-MCPRecentKeep+1:]
	}
	out := make([]store.RecentProbe, 0, len(w)+1)
	return append(append(out, w...), p)
}

// upDown applies a probe's outcome to rec's state and failure count: down
// after the failure threshold of failed probes (failure says why; "" is a
// success), up after one success. The event, if any, says the state or the
// probe's status changed.
func upDown(prev store.Record, rec *store.Record, rep *probe.Report, failure string) *Event {
	name := targetName(prev.Target)
	threshold := prev.FailureThreshold
	if threshold <= 0 {
		threshold = DefaultFailureThreshold
	}
	var ev *Event
	if failure != "" {
		rec.ConsecutiveFailures++
		if rec.ConsecutiveFailures >= threshold && prev.State != StateDown {
			rec.State = StateDown
			ev = &Event{Kind: EventStatusChanged, Level: LevelCritical,
				Message: fmt.Sprintf("%s is down after %d consecutive failed probes: %s", name, rec.ConsecutiveFailures, failure)}
		}
	} else {
		rec.ConsecutiveFailures = 0
		if prev.State != StateUp {
			rec.State = StateUp
			// Coming up is good news: info, or warning when the probe still
			// has findings (their own alerts carry any critical level).
			lvl := LevelInfo
			if rep.Status != probe.StatusOK {
				lvl = LevelWarning
			}
			msg := fmt.Sprintf("%s is up (status %s)", name, rep.Status)
			if prev.State == StateDown {
				msg = fmt.Sprintf("%s is up again (status %s)", name, rep.Status)
			}
			ev = &Event{Kind: EventStatusChanged, Level: lvl, Message: msg}
		}
	}
	if rec.State == "" {
		rec.State = StatePending
	}
	// A change of last_report.status alone (ok -> warning) also matters to
	// subscribers, and so does a first failed probe, whose status may not
	// have changed (an MCP endpoint's 401 leaves the TLS status ok).
	firstFailure := failure != "" && rec.ConsecutiveFailures == 1
	if ev == nil && prev.LastStatus != "" && (prev.LastStatus != rec.LastStatus || firstFailure) {
		lvl := string(rep.Status.Severity())
		msg := fmt.Sprintf("%s: probe status %s -> %s", name, prev.LastStatus, rec.LastStatus)
		if failure != "" {
			// Not down yet by the watcher rules: a warning, not an outage.
			lvl = LevelWarning
			msg = fmt.Sprintf("%s: probe failed (%d of %d before down): %s", name, rec.ConsecutiveFailures, threshold, failure)
		}
		ev = &Event{Kind: EventStatusChanged, Level: lvl, Message: msg}
	}
	return ev
}

// certificate follows the leaf of a probe: a new fingerprint is a rotation
// (stages are per certificate: a new one starts clean, one seen before
// keeps what already fired for it), and an expiry stage fires once per
// certificate when one more severe than any fired for it is reached. It
// sets out.alert (state to persist) and out.transition.
func certificate(prev store.Record, rec *store.Record, rep *probe.Report, at time.Time, lookup alertLookup, out *outcome) (rotEv, stageEv *Event) {
	name := targetName(prev.Target)
	fp := rep.Leaf.SHA256
	v := probe.Validity{NotBefore: rep.Leaf.NotBefore, NotAfter: rep.Leaf.NotAfter}
	rec.NotAfter = v.NotAfter
	known := func() store.Alert {
		if a, ok := lookup(fp); ok {
			return a
		}
		return store.Alert{Fingerprint: fp, NotAfter: v.NotAfter, FirstSeen: at}
	}
	var alert store.Alert
	if fp != prev.Fingerprint {
		if prev.Fingerprint != "" {
			rotEv = &Event{Kind: EventRotated, Level: LevelInfo,
				Message: fmt.Sprintf("%s: certificate rotated (sha256 %s -> %s), new one expires %s",
					name, short(prev.Fingerprint), short(fp), v.NotAfter.UTC().Format(time.RFC3339))}
			out.transition = true
			if !prev.NotAfter.IsZero() && v.NotAfter.After(prev.NotAfter) {
				rec.RenewalCycle = v.NotAfter.Sub(prev.NotAfter)
			}
		}
		if a, ok := lookup(fp); ok {
			alert = a
		} else {
			alert = known()
			out.alert = &alert
		}
		rec.Fingerprint = fp
		rec.FiredStage = alert.Fired()
	}
	stage := stageOf(v, at, prev.Thresholds)
	if stage == probe.StageNone || !moreSevere(stage, probe.Stage(rec.FiredStage), v) {
		return rotEv, nil
	}
	if out.alert == nil {
		alert = known()
	}
	alert.Stages = append(append([]string(nil), alert.Stages...), string(stage))
	out.alert = &alert
	rec.FiredStage = string(stage)
	out.transition = true
	return rotEv, stageEvent(name, stage, v, at, fp)
}

// stageEvent announces a stage crossed: critical once expired or when the
// stage leaves 7 days or less, warning before.
func stageEvent(name string, stage probe.Stage, v probe.Validity, at time.Time, fp string) *Event {
	lvl := LevelWarning
	if t, ok := stage.Threshold(); !ok || t.Span(v.Lifetime()) <= 7*24*time.Hour {
		lvl = LevelCritical
	}
	msg := fmt.Sprintf("%s: certificate expires in %s (%s; %s), stage %s (sha256 %s)",
		name, probe.TimeLeft(v.NotAfter, at), v.NotAfter.UTC().Format(time.RFC3339), probe.LifetimeProgress(v, at), stage, short(fp))
	if stage == probe.StageExpired {
		msg = fmt.Sprintf("%s: certificate expired at %s (sha256 %s)", name, v.NotAfter.UTC().Format(time.RFC3339), short(fp))
	}
	return &Event{Kind: EventStageCrossed, Level: lvl, Message: msg}
}

// stageOf is the expiry stage of a certificate at time at by the watch's
// thresholds, exactly as the Report's expiry_stage is computed (probe owns
// the rule).
func stageOf(v probe.Validity, at time.Time, thresholds []probe.Threshold) probe.Stage {
	if len(thresholds) == 0 {
		thresholds = probe.DefaultThresholds
	}
	return probe.ExpiryStage(v, at, thresholds)
}

// moreSevere says whether stage leaves less time than fired, the most
// severe stage fired so far for the certificate ("" when none): expired
// beats everything, thresholds compare by the time left at which they are
// reached for this certificate. A fired stage this binary cannot read
// (written by another version) counts as none.
func moreSevere(stage, fired probe.Stage, v probe.Validity) bool {
	switch {
	case fired == probe.StageExpired:
		return false
	case stage == probe.StageExpired:
		return true
	}
	f, ok := fired.Threshold()
	if !ok {
		return true
	}
	s, _ := stage.Threshold()
	life := v.Lifetime()
	return s.Span(life) < f.Span(life)
}

// reason names the most severe finding of a failed probe.
func reason(rep *probe.Report) string {
	best := -1
	for i, f := range rep.Findings {
		if best < 0 || f.Severity.Rank() > rep.Findings[best].Severity.Rank() {
			best = i
		}
	}
	if best < 0 {
		return "status " + string(rep.Status)
	}
	return rep.Findings[best].Code + ": " + rep.Findings[best].Message
}

// mcpReason names why an endpoint whose TLS is fine did not answer as an
// MCP server: the finding that says so (an authorization challenge is only
// info on a Report, but it is the cause here), else the most severe.
func mcpReason(rep *probe.Report) string {
	for _, f := range rep.Findings {
		switch f.Code {
		case probe.CodeNotMCP, probe.CodeMCPAuthRequired, probe.CodeClientCertRequired:
			return f.Code + ": " + f.Message
		}
	}
	return "no MCP answer; " + reason(rep)
}

func targetName(t probe.TargetInfo) string {
	n := t.String()
	if t.IP != "" {
		n += " (via " + t.IP + ")"
	}
	return n
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}
