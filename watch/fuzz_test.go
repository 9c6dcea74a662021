package watch

import (
	"errors"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// FuzzParseSchedule: any schedule string an agent sends is either a
// *probe.FieldError on field "schedule" or a schedule that fires, never a
// panic or a hang. Seeds live in testdata/fuzz/FuzzParseSchedule.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{
		"", "@every 6h", "@every 1s", "@every 500ms", "@every 1.5s", "@every -1s", "@every",
		"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@reboot",
		"*/5 * * * *", "0 */2 * * * *", "0 0 31 2 *", "0 0 29 2 *", "1-5/2 0 * * MON-FRI",
		"CRON_TZ=Europe/Berlin 0 9 * * *", "TZ=UTC 0 0 * * *", "* * * * * * *", "60 * * * *",
		"*/0 * * * *", "5-1 * * * *", "? * * * *", "0 0 L * *",
	} {
		f.Add(s)
	}
	ref := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSchedule(spec)
		if err != nil {
			var fe *probe.FieldError
			if !errors.As(err, &fe) || fe.Field != "schedule" {
				t.Fatalf("ParseSchedule(%q) error %T %v: want *probe.FieldError on schedule", spec, err, err)
			}
			return
		}
		if s.cron == nil {
			t.Fatalf("ParseSchedule(%q) accepted without a parsed schedule", spec)
		}
		if s.period <= 0 {
			t.Fatalf("ParseSchedule(%q): period %v, want > 0", spec, s.period)
		}
		if s.Every != 0 && s.Every < time.Second {
			t.Fatalf("ParseSchedule(%q): every %v below 1s", spec, s.Every)
		}
		if next := s.cron.Next(ref); next.IsZero() || !next.After(ref) {
			t.Fatalf("ParseSchedule(%q) accepted a schedule that never fires (next %v)", spec, next)
		}
	})
}
