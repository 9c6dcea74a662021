package watch

// Caps on how many watches there are, so that one client cannot fill a
// shared server: one in total, one per subject. A subject is who created the
// watch: its OAuth subject (created_by) when the caller has one, which is
// stored with the watch and so counts across sessions and restarts; else
// the MCP session it was created in, counted in memory for as long as this
// engine runs (a session does not outlive the process that serves it). The
// command line has neither and meets only the total. Updating a watch that
// exists (Add of the same target) creates nothing and is never refused.

import (
	"fmt"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// Defaults of the caps. 100,000 watches is the scale the engine is built
// and measured for (BENCHMARKS.md: about 110 MiB resident); a tenth of it
// per subject leaves room for others on a shared server.
const (
	DefaultMaxWatches           = 100_000
	DefaultMaxWatchesPerSubject = 10_000
)

// subject keys: an OAuth subject and a session can never collide.
func subjectKey(createdBy, session string) string {
	switch {
	case createdBy != "":
		return "by:" + createdBy
	case session != "":
		return "session:" + session
	}
	return ""
}

// recordSubject is the subject of a stored watch (its session, if it had
// one, is not stored).
func recordSubject(r *store.Record) string { return subjectKey(r.CreatedBy, "") }

// countLocked adds d to the count of en's subject. Caller holds e.mu.
func (e *Engine) countLocked(en *entry, d int) {
	if en.subject == "" {
		return
	}
	if n := e.subjects[en.subject] + d; n > 0 {
		e.subjects[en.subject] = n
	} else {
		delete(e.subjects, en.subject)
	}
}

// admitLocked refuses a new watch of subject beyond the caps, naming the
// cap as the field. Caller holds e.mu.
func (e *Engine) admitLocked(subject string) error {
	if n := len(e.entries); n >= e.cfg.MaxWatches {
		return &probe.FieldError{Field: "max_watches",
			Reason: fmt.Sprintf("this server holds %d watches, its limit; remove some before adding more", n)}
	}
	if subject == "" {
		return nil
	}
	if n := e.subjects[subject]; n >= e.cfg.MaxWatchesPerSubject {
		who := "this session"
		if len(subject) > 3 && subject[:3] == "by:" {
			who = fmt.Sprintf("%q", subject[3:])
		}
		return &probe.FieldError{Field: "max_watches_per_subject",
			Reason: fmt.Sprintf("%s created %d watches, the limit per subject; remove some before adding more", who, n)}
	}
	return nil
}
