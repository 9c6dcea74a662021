package watch

import (
	"fmt"
	"time"

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
func evaluate(prev store.Record, rep *probe.Report, now time.Time, lookup alertLookup) outcome {
	rec := prev
	at := rep.CheckedAt
	if at.IsZero() {
		at = now
	}
	rec.LastCheckedAt = at
	rec.UpdatedAt = now
	rec.LastStatus = string(rep.Status)
	var out outcome
	statusEv := upDown(prev, &rec, rep)
	out.transition = statusEv != nil || prev.LastCheckedAt.IsZero()
	var rotEv, stageEv *Event
	if rep.Leaf != nil && rep.Leaf.SHA256 != "" {
		rotEv, stageEv = certificate(prev, &rec, rep, at, lookup, &out)
	}
	for _, ev := range []*Event{rotEv, statusEv, stageEv} {
		if ev != nil {
			out.events = append(out.events, *ev)
		}
	}
	out.rec = rec
	return out
}

// upDown applies a probe's status to rec's state and failure count: down
// after the failure threshold, up after one success. The event, if any,
// says the state or the probe's status changed.
func upDown(prev store.Record, rec *store.Record, rep *probe.Report) *Event {
	name := targetName(prev.Target)
	threshold := prev.FailureThreshold
	if threshold <= 0 {
		threshold = DefaultFailureThreshold
	}
	var ev *Event
	if rep.Status == probe.StatusDown {
		rec.ConsecutiveFailures++
		if rec.ConsecutiveFailures >= threshold && prev.State != StateDown {
			rec.State = StateDown
			ev = &Event{Kind: EventStatusChanged, Level: LevelCritical,
				Message: fmt.Sprintf("%s is down after %d consecutive failed probes: %s", name, rec.ConsecutiveFailures, reason(rep))}
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
	// A change of last_report.status alone (ok -> warning, a first failed
	// probe) also matters to subscribers.
	if ev == nil && prev.LastStatus != "" && prev.LastStatus != rec.LastStatus {
		lvl := string(rep.Status.Severity())
		msg := fmt.Sprintf("%s: probe status %s -> %s", name, prev.LastStatus, rec.LastStatus)
		if rep.Status == probe.StatusDown {
			// Not down yet by the watcher rules: a warning, not an outage.
			lvl = LevelWarning
			msg = fmt.Sprintf("%s: probe failed (%d of %d before down): %s", name, rec.ConsecutiveFailures, threshold, reason(rep))
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
