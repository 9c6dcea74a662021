package probe

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// validityOf is a certificate of lifetime life from start, as Let's Encrypt
// writes it (not_after is the last valid second).
func validityOf(start time.Time, life time.Duration) Validity {
	return Validity{NotBefore: start, NotAfter: start.Add(life - time.Second)}
}

func TestExpiryStageLifetimeRelative(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name       string
		life, in   time.Duration
		thresholds []Threshold
		want       Stage
	}{
		// A 90-day certificate reaches its 30d stage exactly as before:
		// at days_remaining 30.
		{"90d_days_remaining_31", 90 * day, 59*day - time.Hour, DefaultThresholds, StageNone},
		{"90d_days_remaining_30", 90 * day, 60*day - 23*time.Hour, DefaultThresholds, "30d"},
		{"90d_days_remaining_13", 90 * day, 76*day + time.Hour, DefaultThresholds, "14d"},
		// A 9-day certificate is quiet until its last third.
		{"9d_8_days_left", 9 * day, day, DefaultThresholds, StageNone},
		{"9d_3_days_5h_left", 9 * day, 6*day - 5*time.Hour, DefaultThresholds, StageNone},
		{"9d_2_days_12h_left", 9 * day, 6*day + 12*time.Hour, DefaultThresholds, "7d"},
		{"9d_20h_left", 9 * day, 8*day + 4*time.Hour, DefaultThresholds, "1d"},
		// A 1-day certificate replaced every 8 hours never reaches a
		// stage; one left to run past 16 hours does.
		{"1d_8h_in", day, 8 * time.Hour, DefaultThresholds, StageNone},
		{"1d_16h_in", day, 16*time.Hour + time.Minute, DefaultThresholds, "1d"},
		// Hours and shares of the lifetime.
		{"hours_not_yet", day, 10 * time.Hour, []Threshold{Hours(6)}, StageNone},
		{"hours_reached", day, 19 * time.Hour, []Threshold{Hours(6)}, "6h"},
		{"percent_reached", 10 * day, 8*day + time.Hour, []Threshold{Percent(20), Days(30)}, "20%"},
		{"percent_capped_by_third", 10 * day, 5 * day, []Threshold{Percent(50)}, StageNone},
		{"smallest_of_mixed", 9 * day, 8*day + 18*time.Hour, []Threshold{Days(1), Hours(12), Percent(20)}, "12h"},
		{"long_lived_unaffected", 365 * day, 340 * day, DefaultThresholds, "30d"},
		{"expired", day, day + time.Second, DefaultThresholds, StageExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := validityOf(t0, tc.life)
			if got := ExpiryStage(v, t0.Add(tc.in), tc.thresholds); got != tc.want {
				t.Errorf("ExpiryStage = %q, want %q (days_remaining %d)", got, tc.want, DaysRemaining(v.NotAfter, t0.Add(tc.in)))
			}
		})
	}
}

func TestParseThreshold(t *testing.T) {
	for _, s := range []string{"30d", "1d", "36h", "20%", "365d"} {
		t.Run(s, func(t *testing.T) {
			th, err := ParseThreshold(s)
			if err != nil || th.String() != s {
				t.Errorf("ParseThreshold(%q) = %v, %v", s, th, err)
			}
			if st, ok := th.Stage().Threshold(); !ok || st != th {
				t.Errorf("Stage().Threshold() = %v, %v", st, ok)
			}
		})
	}
	for _, s := range []string{"", "d", "30", "0d", "-1h", "+5d", "05d", "3w", "1.5h", "x%"} {
		t.Run("bad_"+s, func(t *testing.T) {
			if th, err := ParseThreshold(s); err == nil {
				t.Errorf("ParseThreshold(%q) = %v, want an error", s, th)
			}
		})
	}
}

func TestRenewalOverdue(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		life, in time.Duration
		cycle    time.Duration
		want     Severity // "" means no finding
		msg      string
	}{
		{"9d_issued_7d_ago", 9 * day, 7 * day, 0, SeverityWarning, "day 7 of 9"},
		{"9d_issued_1d_ago", 9 * day, day, 0, "", ""},
		{"9d_at_two_thirds_within_slack", 9 * day, 6*day + time.Hour, 0, "", ""},
		{"9d_last_tenth", 9 * day, 8*day + 12*time.Hour, 0, SeverityCritical, "12 hours left"},
		{"90d_70_days_in", 90 * day, 70 * day, 0, SeverityWarning, "day 70 of 90"},
		{"90d_10_days_in", 90 * day, 10 * day, 0, "", ""},
		{"90d_61_days_in_within_slack", 90 * day, 61 * day, 0, "", ""},
		{"1d_20h_in", day, 20 * time.Hour, 0, SeverityWarning, "hour 20 of 24"},
		{"1y_manual_not_judged", 365 * day, 300 * day, 0, "", ""},
		{"1y_with_observed_cycle", 365 * day, 300 * day, 240 * day, SeverityWarning, "replaced every 240 days"},
		{"expired_is_not_overdue", 9 * day, 10 * day, 0, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := renewalOverdue(validityOf(t0, tc.life), t0.Add(tc.in), tc.cycle)
			if tc.want == "" {
				if ok {
					t.Errorf("got %+v, want none", f)
				}
				return
			}
			if !ok || f.Code != CodeRenewalOverdue || f.Severity != tc.want || !strings.Contains(f.Message, tc.msg) {
				t.Errorf("got %+v (%v), want %s containing %q", f, ok, tc.want, tc.msg)
			}
		})
	}
}

// TestRunShortLived probes real loopback servers for the lifetime rules:
// renewal overdue, quiet short-lived certificates, an expiring
// intermediate and the chain's earliest expiry.
func TestRunShortLived(t *testing.T) {
	pki := testlab.NewPKI(t)
	now := pki.Now
	shortCA := pki.NewIntermediate(pki.Root, testlab.CAOpts{CommonName: "tlswatch 20-day Intermediate", NotAfter: now.Add(20 * day)})
	cases := []struct {
		name          string
		leaf          testlab.LeafOpts
		want, absent  []string
		stage         Stage
		earliestInter bool // the chain's earliest expiry is the intermediate's
	}{
		{"9d_issued_7d_ago", testlab.LeafOpts{NotBefore: now.Add(-7 * day), NotAfter: now.Add(2*day - time.Second)},
			[]string{CodeRenewalOverdue, CodeExpiringSoon}, nil, "1d", false},
		{"9d_issued_1d_ago", testlab.LeafOpts{NotBefore: now.Add(-day), NotAfter: now.Add(8*day - time.Second)},
			nil, []string{CodeRenewalOverdue, CodeExpiringSoon}, StageNone, false},
		{"90d_70_days_in", testlab.LeafOpts{NotBefore: now.Add(-70 * day), NotAfter: now.Add(20*day - time.Second)},
			[]string{CodeRenewalOverdue, CodeExpiringSoon}, nil, "30d", false},
		{"90d_10_days_in", testlab.LeafOpts{NotBefore: now.Add(-10 * day), NotAfter: now.Add(80*day - time.Second)},
			nil, []string{CodeRenewalOverdue, CodeExpiringSoon, CodeIntermediateExpiring}, StageNone, false},
		{"intermediate_20_days_left", testlab.LeafOpts{Issuer: shortCA, NotBefore: now.Add(-10 * day), NotAfter: now.Add(80*day - time.Second)},
			[]string{CodeIntermediateExpiring}, []string{CodeRenewalOverdue, CodeExpiringSoon}, StageNone, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := testlab.StartWith(t, pki, pki.Leaf(tc.leaf), nil)
			r, err := Run(context.Background(), labTarget(sc), labOptions(sc))
			if err != nil {
				t.Fatal(err)
			}
			got := findingsOf(r)
			for _, c := range tc.want {
				if _, ok := got[c]; !ok {
					t.Errorf("missing %s; got %v", c, codesOf(r))
				}
			}
			for _, c := range tc.absent {
				if _, ok := got[c]; ok {
					t.Errorf("unexpected %s; got %v", c, codesOf(r))
				}
			}
			if r.ExpiryStage != tc.stage || !r.Trusted {
				t.Errorf("stage %q trusted %v, want %q true", r.ExpiryStage, r.Trusted, tc.stage)
			}
			ch := r.Chain
			if ch == nil || ch.EarliestNotAfter == nil || len(ch.Validity) != 3 {
				t.Fatalf("chain = %+v", ch)
			}
			want := r.Leaf.NotAfter
			if tc.earliestInter {
				want = shortCA.Cert.NotAfter.UTC()
			}
			if !ch.EarliestNotAfter.Equal(want) || !ch.Validity[0].NotBefore.Equal(r.Leaf.NotBefore) {
				t.Errorf("earliest_not_after %v, want %v; validity %+v", ch.EarliestNotAfter, want, ch.Validity)
			}
		})
	}
}

func TestThresholdJSON(t *testing.T) {
	in := []Threshold{Days(30), Hours(36), Percent(20)}
	b, err := json.Marshal(in)
	if err != nil || string(b) != `[30,"36h","20%"]` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var out []Threshold
	if err := json.Unmarshal(b, &out); err != nil || len(out) != 3 || out[0] != in[0] || out[1] != in[1] || out[2] != in[2] {
		t.Fatalf("Unmarshal = %v, %v", out, err)
	}
	for _, bad := range []string{`["36x"]`, `[1.5]`, `[true]`} {
		if err := json.Unmarshal([]byte(bad), &out); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}
