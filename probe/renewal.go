package probe

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// Renewal rules: is the automation that should replace this certificate
// still working, and does anything above the leaf expire first?

// automatedLifetime is the longest lifetime for which renewal_overdue is
// judged without more evidence: what ACME CAs (90 days and less) and
// internal CAs (hours to weeks) issue, and every public certificate from
// 2027 on. A one-year certificate renewed by hand a month before expiry is
// not "overdue" after eight months.
const automatedLifetime = 100 * day

// renewalOverdue says that the certificate is past the point where
// automation renews: two thirds of its lifetime (certbot, cert-manager,
// Caddy and ARI windows all sit there), plus a thirtieth of the lifetime
// of slack for clients that run once or twice a day and for ARI windows
// (3 days of a 90-day certificate, 48 minutes of a 1-day one). Critical
// once less than a tenth of the lifetime is left. cycle is the observed
// renewal cycle, zero when unknown.
func renewalOverdue(v Validity, now time.Time, cycle time.Duration) (Finding, bool) {
	life := v.Lifetime()
	if cycle <= 0 && life > automatedLifetime {
		return Finding{}, false
	}
	left := v.NotAfter.Sub(now)
	if left < 0 || now.Before(v.NotBefore) {
		return Finding{}, false // expired and not_yet_valid say it
	}
	if now.Sub(v.NotBefore) < life*2/3+life/30 {
		return Finding{}, false
	}
	f := NewFinding(CodeRenewalOverdue, fmt.Sprintf(
		"%s: the certificate is past two thirds of its lifetime, when ACME clients (certbot, cert-manager, Caddy) renew, and it was not replaced: the renewal automation has likely stopped; %s left",
		LifetimeProgress(v, now), TimeLeft(v.NotAfter, now)))
	if cycle > 0 {
		f.Message += fmt.Sprintf(" (until now it was replaced every %s)", inDays(cycle))
	}
	f.Severity = SeverityWarning
	if left < life/10 {
		f.Severity = SeverityCritical
	}
	return f, true
}

// LifetimeProgress says how far into its lifetime a certificate is: "day 7
// of 9" (whole days elapsed, at least 1), or "hour 17 of 24" for lifetimes
// under three days.
func LifetimeProgress(v Validity, now time.Time) string {
	life, elapsed := v.Lifetime(), now.Sub(v.NotBefore)
	unit, name := day, "day"
	if life < 3*day {
		unit, name = time.Hour, "hour"
	}
	total := int((life + unit/2) / unit)
	n := min(max(int(elapsed/unit), 1), total)
	return fmt.Sprintf("%s %d of %d", name, n, total)
}

// inDays says how long d is in whole days, rounded to the nearest ("10
// days"), or in hours below half a day ("5 hours").
func inDays(d time.Duration) string {
	if days := int((d + 12*time.Hour) / (24 * time.Hour)); days >= 1 {
		return plural(days, "day")
	}
	if h := int((d + 30*time.Minute) / time.Hour); h >= 1 {
		return plural(h, "hour")
	}
	return "less than an hour"
}

// TimeLeft says how long is left until notAfter in the Report's own
// days_remaining (whole days, rounded down) so that text and JSON agree;
// under a day, in hours.
func TimeLeft(notAfter, now time.Time) string {
	if days := DaysRemaining(notAfter, now); days >= 1 {
		return plural(days, "day")
	}
	return inDays(notAfter.Sub(now))
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// chainExpiry fills the chain's earliest expiry and the validity of each
// certificate on the path clients use, and flags a certificate above the
// leaf that expires within the leaf's largest threshold: when it does,
// every leaf under it goes down with it. Severity: critical within 7 days,
// warning otherwise (the window is 30 days with the default thresholds).
func (a *chainAnalysis) chainExpiry(thresholds []Threshold) {
	path := a.clientPath()
	life := Validity{a.leaf.NotBefore, a.leaf.NotAfter}.Lifetime()
	window := time.Duration(0)
	for _, t := range thresholds {
		window = max(window, t.Span(life))
	}
	var soon []string
	sev := SeverityWarning
	for i, c := range path {
		a.validity = append(a.validity, CertValidity{Subject: c.Subject.String(), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()})
		if a.earliest.IsZero() || c.NotAfter.Before(a.earliest) {
			a.earliest = c.NotAfter.UTC()
		}
		left := c.NotAfter.Sub(a.now)
		if i == 0 || left < 0 || a.now.Before(c.NotBefore) || left > window {
			continue // the leaf has its own rules; expired_intermediate says the rest
		}
		soon = append(soon, fmt.Sprintf("the %s %s expires on %s, in %s", pathRole(c), c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339), TimeLeft(c.NotAfter, a.now)))
		if left <= 7*day {
			sev = SeverityCritical
		}
	}
	if len(soon) > 0 {
		f := NewFinding(CodeIntermediateExpiring, strings.Join(soon, "; ")+": every certificate issued under it stops working then, whatever its own expiry; serve the CA's current chain")
		f.Severity = sev
		a.findings = append(a.findings, f)
	}
}

// pathRole names a certificate above the leaf.
func pathRole(c *x509.Certificate) string {
	if isSelfSigned(c) {
		return "root"
	}
	return "intermediate"
}

// clientPath is the path a client uses: the verified chain, else the served
// path plus what AIA found.
func (a *chainAnalysis) clientPath() []*x509.Certificate {
	if len(a.chains) > 0 {
		return a.chains[0]
	}
	var path []*x509.Certificate
	for _, i := range a.path {
		path = append(path, a.served[i])
	}
	return append(path, a.aiaCerts...)
}
