package probe

import (
	"fmt"
	"strconv"
	"time"
)

// Expiry relative to a certificate's lifetime. Certificates now live from a
// day (internal CAs) to 90 days (ACME) to a year or more (private PKIs), so
// a fixed number of days means nothing on its own: 8 days left is healthy
// for a 9-day certificate and an emergency for a 90-day one. The rules here
// measure time left against the lifetime too.

const day = 24 * time.Hour

// ThresholdUnit says how a Threshold measures time left.
type ThresholdUnit byte

const (
	UnitDays    ThresholdUnit = 'd' // whole days, as days_remaining counts them
	UnitHours   ThresholdUnit = 'h'
	UnitPercent ThresholdUnit = '%' // a share of the certificate's lifetime
)

// Threshold is one expiry stage: N days, N hours or N percent of the
// lifetime left. Its String ("30d", "36h", "20%") is the stage's name and
// identity. Ranges are the business of whoever accepts thresholds from
// users (package watch); here any N > 0 is evaluated.
type Threshold struct {
	N    int
	Unit ThresholdUnit
}

// Days, Hours and Percent build thresholds.
func Days(n int) Threshold    { return Threshold{n, UnitDays} }
func Hours(n int) Threshold   { return Threshold{n, UnitHours} }
func Percent(n int) Threshold { return Threshold{n, UnitPercent} }

// DayThresholds turns whole-day thresholds into Thresholds.
func DayThresholds(days ...int) []Threshold {
	out := make([]Threshold, len(days))
	for i, d := range days {
		out[i] = Days(d)
	}
	return out
}

// DefaultThresholds are the expiry stages of DESIGN.md: 30, 14, 7, 1 days.
var DefaultThresholds = DayThresholds(30, 14, 7, 1)

// String is the canonical form and the stage name: "30d", "36h", "20%".
func (t Threshold) String() string { return strconv.Itoa(t.N) + string(t.Unit) }

// Stage is the expiry stage this threshold names.
func (t Threshold) Stage() Stage { return Stage(t.String()) }

// ParseThreshold reads the canonical form back ("30d", "36h", "20%").
func ParseThreshold(s string) (Threshold, error) {
	if len(s) < 2 {
		return Threshold{}, fmt.Errorf("%q: want a number followed by d, h or %%", s)
	}
	unit := ThresholdUnit(s[len(s)-1])
	switch unit {
	case UnitDays, UnitHours, UnitPercent:
	default:
		return Threshold{}, fmt.Errorf("%q: want a number followed by d, h or %%", s)
	}
	digits := s[:len(s)-1]
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 || digits[0] == '+' || digits[0] == '0' {
		return Threshold{}, fmt.Errorf("%q: want a positive whole number before %c", s, unit)
	}
	return Threshold{n, unit}, nil
}

// MarshalJSON writes a day threshold as a number (30) and the others as
// their canonical string ("36h", "20%"): how a watch record shows them.
func (t Threshold) MarshalJSON() ([]byte, error) {
	if t.Unit == UnitDays {
		return strconv.AppendInt(nil, int64(t.N), 10), nil
	}
	return strconv.AppendQuote(nil, t.String()), nil
}

// UnmarshalJSON reads what MarshalJSON writes: a stored value, already
// validated when it was accepted (user input is validated by package
// watch, never here).
func (t *Threshold) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] != '"' {
		n, err := strconv.Atoi(string(b))
		if err != nil {
			return fmt.Errorf("threshold %s: want a whole number of days or a string such as \"36h\"", b)
		}
		*t = Days(n)
		return nil
	}
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("threshold %s: %w", b, err)
	}
	v, err := ParseThreshold(s)
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Validity is a certificate's validity period.
type Validity struct {
	NotBefore, NotAfter time.Time
}

// Lifetime is the whole validity period. RFC 5280 counts not_after as
// valid, so a certificate from 00:00:00 to 23:59:59 lives one day. A zero
// NotBefore (a Report from before not_before was kept) gives the longest
// Duration: a lifetime so long that it changes no rule.
func (v Validity) Lifetime() time.Duration {
	return v.NotAfter.Add(time.Second).Sub(v.NotBefore)
}

// Span is the time left at which t is reached, for a certificate of
// lifetime life (before the last-third rule): what orders thresholds of
// mixed units.
func (t Threshold) Span(life time.Duration) time.Duration {
	switch t.Unit {
	case UnitDays:
		return time.Duration(t.N) * day
	case UnitHours:
		return time.Duration(t.N) * time.Hour
	}
	return shareOf(life, t.N)
}

// shareOf is pct percent of d, without overflowing for long lifetimes.
func shareOf(d time.Duration, pct int) time.Duration {
	return time.Duration(float64(d) * float64(pct) / 100)
}

// reached reports whether t applies to v at now: the time left is within
// t and within the last third of the lifetime. Day thresholds count whole
// days as days_remaining does, and so does the third once it is a week or
// more (a 90-day certificate reaches its 30d stage exactly as before);
// shorter lifetimes compare exact time, or a 1-day certificate would
// always be "0 days" from expiry.
func (t Threshold) reached(v Validity, now time.Time) bool {
	left := v.NotAfter.Sub(now)
	life := v.Lifetime()
	days := DaysRemaining(v.NotAfter, now)
	if t.Unit == UnitDays {
		if days > t.N {
			return false
		}
	} else if left > t.Span(life) {
		return false
	}
	third := life / 3
	if t.Unit == UnitDays && third >= 7*day {
		return days <= int((third+day/2)/day)
	}
	return left <= third
}

// DaysRemaining is the whole days from now until notAfter, rounded down:
// negative once expired (an hour past expiry is -1).
func DaysRemaining(notAfter, now time.Time) int {
	d := notAfter.Sub(now)
	days := int(d / day)
	if d < 0 && d%day != 0 {
		days--
	}
	return days
}

// ExpiryStage is the reached threshold (see Threshold.reached) with the
// least time left, as its stage ("30d", "36h", "20%"); "expired" once
// not_after is past; "none" when no threshold is reached.
func ExpiryStage(v Validity, now time.Time, thresholds []Threshold) Stage {
	if now.After(v.NotAfter) {
		return StageExpired
	}
	life := v.Lifetime()
	var best Threshold
	found := false
	for _, t := range thresholds {
		if t.N <= 0 || !t.reached(v, now) {
			continue
		}
		if !found || t.Span(life) < best.Span(life) {
			best, found = t, true
		}
	}
	if !found {
		return StageNone
	}
	return best.Stage()
}

// expirySeverity grades an approaching expiry by day count: critical at 7
// days or less, warning at 14 or less, info otherwise.
func expirySeverity(days int) Severity {
	switch {
	case days <= 7:
		return SeverityCritical
	case days <= 14:
		return SeverityWarning
	}
	return SeverityInfo
}
