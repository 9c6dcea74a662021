package watch

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
)

// Thresholds as callers give them (a tool's JSON, a command line) and as
// they are stored: validated and put in canonical form here, nowhere else.

// NormalizeThresholds validates thresholds_days. Each value is a whole
// number of days (30, or "30", or "7d"), hours ("36h") or a share of the
// certificate's lifetime ("20%"): days 1 to MaxThresholdDays, hours 1 to
// MaxThresholdHours, percent 1 to 100. At most MaxThresholds values;
// duplicates (by canonical form) are dropped; the result is sorted days,
// then hours, then percent, each largest first. Nil or empty means
// probe.DefaultThresholds. Errors are *probe.FieldError{Field:
// "thresholds_days"} naming the value.
func NormalizeThresholds(raw []any) ([]probe.Threshold, error) {
	if len(raw) == 0 {
		return slices.Clone(probe.DefaultThresholds), nil
	}
	if len(raw) > MaxThresholds {
		return nil, thresholdErr("%d values, at most %d", len(raw), MaxThresholds)
	}
	out := make([]probe.Threshold, 0, len(raw))
	for _, v := range raw {
		t, err := threshold(v)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.SortStableFunc(out, func(a, b probe.Threshold) int {
		if a.Unit != b.Unit {
			return unitOrder(a.Unit) - unitOrder(b.Unit)
		}
		return b.N - a.N
	})
	return out, nil
}

func thresholdErr(format string, args ...any) error {
	return &probe.FieldError{Field: "thresholds_days", Reason: fmt.Sprintf(format, args...)}
}

func unitOrder(u probe.ThresholdUnit) int {
	return strings.IndexByte("dh%", byte(u))
}

// threshold reads one value: a JSON number, a Go integer or a string.
func threshold(v any) (probe.Threshold, error) {
	switch x := v.(type) {
	case int:
		return inRange(probe.Days(x), fmt.Sprint(x))
	case int64:
		return inRange(probe.Days(int(x)), fmt.Sprint(x))
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1e9 {
			return probe.Threshold{}, thresholdErr("%v is not a whole number of days", x)
		}
		return inRange(probe.Days(int(x)), fmt.Sprint(x))
	case json.Number:
		return threshold(x.String())
	case string:
		return thresholdString(x)
	}
	return probe.Threshold{}, thresholdErr("%v: want a number of days or a string such as \"36h\" or \"20%%\"", v)
}

// thresholdString reads "30", "7d", "36h" or "20%".
func thresholdString(s string) (probe.Threshold, error) {
	in := strings.TrimSpace(s)
	unit := probe.UnitDays
	num := in
	if n := len(in); n > 0 {
		switch c := probe.ThresholdUnit(strings.ToLower(in[n-1:])[0]); c {
		case probe.UnitDays, probe.UnitHours, probe.UnitPercent:
			unit, num = c, strings.TrimSpace(in[:n-1])
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || num == "" || num[0] == '+' {
		return probe.Threshold{}, thresholdErr("%q: want whole days (30 or \"7d\"), hours (\"36h\") or a share of the lifetime (\"20%%\")", s)
	}
	return inRange(probe.Threshold{N: n, Unit: unit}, in)
}

// inRange checks a threshold's number against its unit's range.
func inRange(t probe.Threshold, shown string) (probe.Threshold, error) {
	limit := map[probe.ThresholdUnit]int{probe.UnitDays: MaxThresholdDays, probe.UnitHours: MaxThresholdHours, probe.UnitPercent: 100}[t.Unit]
	if t.N < 1 || t.N > limit {
		what := map[probe.ThresholdUnit]string{probe.UnitDays: "days", probe.UnitHours: "hours", probe.UnitPercent: "percent"}[t.Unit]
		return probe.Threshold{}, thresholdErr("%s out of range 1-%d %s", shown, limit, what)
	}
	return t, nil
}
