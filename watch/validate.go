package watch

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tlswatch/tlswatch/probe"
)

// MaxThresholdDays bounds thresholds_days: a stage further out than a year
// would alert on every freshly issued certificate.
const MaxThresholdDays = 365

// scheduleParser accepts the standard five fields, an optional leading
// seconds field, CRON_TZ= prefixes and the descriptors (@every 1s, @hourly,
// @daily, ...).
var scheduleParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed, validated watch schedule.
type Schedule struct {
	Spec  string        // as given, trimmed
	Every time.Duration // > 0 for "@every D" schedules
	cron  cron.Schedule // the parsed spec (also for @every)
	// period estimates the time between two fires; it sizes the jitter of
	// cron specs and tells whether a watch is overdue after a restart.
	period time.Duration
}

// ParseSchedule validates a schedule (cron spec or @every) as watch_endpoint
// takes it; an empty spec means DefaultSchedule. Errors are
// *probe.FieldError{Field: "schedule"}.
func ParseSchedule(spec string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = DefaultSchedule
	}
	bad := func(reason string) (Schedule, error) {
		return Schedule{}, &probe.FieldError{Field: "schedule", Reason: reason}
	}
	if strings.HasPrefix(spec, "@every") {
		// Check before cron does: cron silently rounds sub-second delays up to
		// one second and truncates fractions, which would hide a typo.
		d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(spec, "@every")))
		if err != nil {
			return bad(fmt.Sprintf("%q: want \"@every DURATION\" with a Go duration such as 30s, 5m or 6h", spec))
		}
		if d < time.Second {
			return bad(fmt.Sprintf("%q: interval must be at least 1s", spec))
		}
		if d%time.Second != 0 {
			return bad(fmt.Sprintf("%q: interval must be a whole number of seconds", spec))
		}
	}
	s, err := parseCron(spec)
	if err != nil {
		return bad(fmt.Sprintf("%q is not a cron spec or @every duration: %v", spec, err))
	}
	out := Schedule{Spec: spec, cron: s}
	if cd, ok := s.(cron.ConstantDelaySchedule); ok {
		out.Every = cd.Delay
		out.period = cd.Delay
		return out, nil
	}
	// A spec that can never fire (31 February) parses fine; reject it here so
	// the watch does not sit silently unscheduled.
	ref := time.Date(2026, 1, 1, 0, 0, 0, 0, time.Local)
	n1 := s.Next(ref)
	if n1.IsZero() {
		return bad(fmt.Sprintf("%q never fires", spec))
	}
	n2 := s.Next(n1)
	if n2.IsZero() {
		out.period = 24 * time.Hour
	} else {
		out.period = n2.Sub(n1)
	}
	return out, nil
}

// parseCron wraps cron's parser, which panics on some malformed input (a
// "TZ=" prefix without a following space slices out of range): the schedule
// comes from an agent, so a panic here must be a validation error.
func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed spec")
		}
	}()
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		return nil, fmt.Errorf("a time zone prefix must be followed by a space and the spec")
	}
	return scheduleParser.Parse(spec)
}

// NormalizeThresholds validates thresholds_days: every value in 1..365,
// duplicates removed, sorted descending. Nil or empty means DefaultThresholds.
// Errors are *probe.FieldError{Field: "thresholds_days"}.
func NormalizeThresholds(days []int) ([]int, error) {
	if len(days) == 0 {
		return append([]int(nil), DefaultThresholds...), nil
	}
	seen := make(map[int]bool, len(days))
	out := make([]int, 0, len(days))
	for _, d := range days {
		if d < 1 || d > MaxThresholdDays {
			return nil, &probe.FieldError{Field: "thresholds_days",
				Reason: fmt.Sprintf("%d out of range 1-%d", d, MaxThresholdDays)}
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out, nil
}

// validateFailureThreshold: zero means the default; a watch that needs more
// than 100 consecutive failures to be called down is a typo.
func normalizeFailureThreshold(n int) (int, error) {
	if n == 0 {
		return DefaultFailureThreshold, nil
	}
	if n < 1 || n > 100 {
		return 0, &probe.FieldError{Field: "failure_threshold", Reason: fmt.Sprintf("%d out of range 1-100", n)}
	}
	return n, nil
}
