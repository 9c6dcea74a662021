package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// Retention says how long each kind of history is kept. Zero fields take the
// defaults (DefaultRetention).
type Retention struct {
	// Raw: samples (one per probe) and the daily checkpoint Reports.
	Raw time.Duration
	// Hour and Day: the hourly and daily aggregates.
	Hour, Day time.Duration
	// Changes: the Reports stored at each meaningful change.
	Changes time.Duration
	// MaxBytes, when set, is a budget for the file's live data: while it is
	// exceeded the pruner keeps less raw history, then fewer hourly
	// aggregates, never less than a day of either (see Prune).
	MaxBytes int64
}

// DefaultRetention: a month of raw samples, 400 days of aggregates and of
// changes, so that "what was the uptime a year ago" has an answer.
var DefaultRetention = Retention{
	Raw:     30 * day,
	Hour:    400 * day,
	Day:     400 * day,
	Changes: 400 * day,
}

const day = 24 * time.Hour

// Bounds of a retention period.
const (
	minRetention = time.Hour
	maxRetention = 100 * 365 * day
	minBudget    = 1 << 20
)

func (r Retention) withDefaults() Retention {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&r.Raw, DefaultRetention.Raw)
	def(&r.Hour, DefaultRetention.Hour)
	def(&r.Day, DefaultRetention.Day)
	def(&r.Changes, DefaultRetention.Changes)
	return r
}

// String is the form ParseRetention reads.
func (r Retention) String() string {
	r = r.withDefaults()
	s := fmt.Sprintf("raw=%s,hour=%s,day=%s,changes=%s", fmtPeriod(r.Raw), fmtPeriod(r.Hour), fmtPeriod(r.Day), fmtPeriod(r.Changes))
	if r.MaxBytes > 0 {
		s += ",size=" + strconv.FormatInt(r.MaxBytes, 10)
	}
	return s
}

func fmtPeriod(d time.Duration) string {
	if d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// ParseRetention reads "raw=30d,agg=400d,changes=400d,size=2GB": a comma
// separated list of kind=period with kinds raw, hour, day, agg (hour and
// day), changes, and size=BYTES for the budget. Periods are days ("30d"),
// weeks ("2w") or Go durations ("36h"). Unnamed kinds keep their defaults.
// Errors are probe.FieldErrors naming field.
func ParseRetention(field, s string) (Retention, error) {
	var r Retention
	bad := func(format string, a ...any) (Retention, error) {
		return Retention{}, &probe.FieldError{Field: field, Reason: fmt.Sprintf(format, a...)}
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return bad("%q: want kind=period, e.g. raw=30d", part)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if k == "size" {
			n, err := parseBytes(v)
			if err != nil {
				return bad("size %q: %v", v, err)
			}
			r.MaxBytes = n
			continue
		}
		d, err := parsePeriod(v)
		if err != nil {
			return bad("%s %q: %v", k, v, err)
		}
		switch k {
		case "raw":
			r.Raw = d
		case "hour":
			r.Hour = d
		case "day":
			r.Day = d
		case "agg":
			r.Hour, r.Day = d, d
		case "changes":
			r.Changes = d
		default:
			return bad("unknown kind %q (raw, hour, day, agg, changes, size)", k)
		}
	}
	return r, nil
}

func parsePeriod(v string) (time.Duration, error) {
	var d time.Duration
	unit := map[byte]time.Duration{'d': day, 'w': 7 * day}
	if n := len(v); n > 1 && unit[v[n-1]] != 0 {
		num, err := strconv.ParseInt(v[:n-1], 10, 64)
		if err != nil || num < 0 || num > int64(maxRetention/unit[v[n-1]]) {
			return 0, fmt.Errorf("not a whole number of days or weeks")
		}
		d = time.Duration(num) * unit[v[n-1]]
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, fmt.Errorf("not a period (30d, 2w, 36h)")
		}
	}
	if d < minRetention || d > maxRetention {
		return 0, fmt.Errorf("out of range %s to %s", minRetention, fmtPeriod(maxRetention))
	}
	return d, nil
}

func parseBytes(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(v), strings.ToUpper(u.suffix)) && (u.suffix != "B" || !strings.ContainsAny(v[:len(v)-1], "KMGTkmgt")) {
			v, mult = strings.TrimSpace(v[:len(v)-len(u.suffix)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("not a size (500MB, 2GiB)")
	}
	n := f * float64(mult)
	if n < minBudget || n > 1<<50 {
		return 0, fmt.Errorf("out of range 1MiB to 1PiB")
	}
	return int64(n), nil
}
