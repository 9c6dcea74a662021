package probe

import (
	"fmt"
	"slices"
	"strings"
)

// Mozilla profiles as reported in Report.MozillaProfile.
const (
	ProfileModern       = "modern"
	ProfileIntermediate = "intermediate"
	ProfileOld          = "old"
	ProfileNone         = "none"
)

// maxListedSuites bounds the suites a message names.
const maxListedSuites = 8

// cipherVerdict grades a deep scan: the Mozilla profile the server meets
// (every protocol and suite it accepts allowed by it), a weak_cipher
// finding (warning for suites outside "old" or no forward secrecy at all,
// info for suites that only miss "intermediate") and weak_dh.
func cipherVerdict(scan cipherScan) (string, []Finding) {
	accepted := map[string]bool{}
	for _, p := range scan.protos {
		accepted[p.Version] = p.Accepted
	}
	if len(scan.ciphers) == 0 {
		return "", nil
	}
	worst, fs := gradeModern, false
	broken, legacy := &suiteGroups{}, &suiteGroups{}
	minDH := 0
	for _, c := range scan.ciphers {
		g := suiteGradeOf(c)
		worst = min(worst, g)
		fs = fs || c.Version == "TLS 1.3" || strings.Contains(c.Name, "DHE_")
		switch g {
		case gradeNone:
			broken.add(c)
		case gradeOld:
			legacy.add(c)
		}
		if c.DHBits > 0 && (minDH == 0 || c.DHBits < minDH) {
			minDH = c.DHBits
		}
	}
	profile := profileOf(worst, accepted)
	var out []Finding
	if f, ok := weakCipherFinding(profile, broken, legacy, fs); ok {
		out = append(out, f)
	}
	if minDH > 0 && minDH < 2048 {
		out = append(out, NewFinding(CodeWeakDH, fmt.Sprintf(
			"the server's DHE suites use a %d-bit Diffie-Hellman group: below 2048 bits it is within reach of a well-funded attacker (Logjam), and Mozilla's intermediate profile asks for 2048; clients that prefer DHE get it", minDH)))
	}
	return profile, out
}

// gradeOf reads a CipherInfo.Profile back.
func gradeOf(profile string) suiteGrade {
	return map[string]suiteGrade{"none": gradeNone, "old": gradeOld, "intermediate": gradeIntermediate, "modern": gradeModern}[profile]
}

// suiteGradeOf is a suite's grade, lowered by a small DH group: under 1024
// bits no profile allows it, under 2048 only "old".
func suiteGradeOf(c CipherInfo) suiteGrade {
	g := gradeOf(c.Profile)
	switch {
	case c.DHBits > 0 && c.DHBits < 1024:
		return gradeNone
	case c.DHBits > 0 && c.DHBits < 2048:
		return min(g, gradeOld)
	}
	return g
}

// profileOf is the best profile whose protocols and suites cover what the
// server accepts: modern is TLS 1.3 alone, intermediate TLS 1.2 and 1.3,
// old anything from TLS 1.0; SSL 3.0 is outside all three.
func profileOf(worst suiteGrade, accepted map[string]bool) string {
	switch {
	case worst == gradeNone || accepted["SSL 3.0"]:
		return ProfileNone
	case worst == gradeOld || accepted["TLS 1.0"] || accepted["TLS 1.1"]:
		return ProfileOld
	case worst == gradeModern && !accepted["TLS 1.2"]:
		return ProfileModern
	}
	return ProfileIntermediate
}

// suiteGroups lists suite names by the reason they miss a profile, each
// name once, in the order found.
type suiteGroups struct {
	reasons []string
	names   map[string][]string
	n       int
}

func (g *suiteGroups) add(c CipherInfo) {
	why := c.Reason
	if c.DHBits > 0 && c.DHBits < 2048 && suiteGradeOf(c) < gradeOf(c.Profile) {
		why = fmt.Sprintf("a %d-bit DH group", c.DHBits)
	}
	if g.names == nil {
		g.names = map[string][]string{}
	}
	if slices.Contains(g.names[why], c.Name) {
		return
	}
	if _, ok := g.names[why]; !ok {
		g.reasons = append(g.reasons, why)
	}
	g.names[why] = append(g.names[why], c.Name)
	g.n++
}

// String is "reason: a, b; other reason: c", at most maxListedSuites names
// per reason.
func (g *suiteGroups) String() string {
	var parts []string
	for _, why := range g.reasons {
		names := g.names[why]
		list := strings.Join(names[:min(len(names), maxListedSuites)], ", ")
		if len(names) > maxListedSuites {
			list += fmt.Sprintf(" and %d more", len(names)-maxListedSuites)
		}
		parts = append(parts, why+": "+list)
	}
	return strings.Join(parts, "; ")
}

// weakCipherFinding words the weak_cipher finding, if any.
func weakCipherFinding(profile string, broken, legacy *suiteGroups, fs bool) (Finding, bool) {
	var parts []string
	if broken.n > 0 {
		parts = append(parts, fmt.Sprintf("it accepts %d suite(s) that no Mozilla profile allows [%s]", broken.n, broken))
	}
	if !fs {
		parts = append(parts, "no suite it accepts has forward secrecy (no ECDHE, DHE or TLS 1.3): recorded traffic can be decrypted with the server's key")
	}
	if len(parts) > 0 {
		if legacy.n > 0 {
			parts = append(parts, fmt.Sprintf("%d more only miss Mozilla's intermediate profile [%s]", legacy.n, legacy))
		}
		return Finding{Code: CodeWeakCipher, Severity: SeverityWarning, Message: strings.Join(parts, "; ")}, true
	}
	if legacy.n == 0 {
		return Finding{}, false
	}
	return Finding{Code: CodeWeakCipher, Severity: SeverityInfo, Message: fmt.Sprintf(
		"the server meets Mozilla's %s profile, not intermediate: it accepts %d suite(s) modern clients never need [%s]", profile, legacy.n, legacy)}, true
}
