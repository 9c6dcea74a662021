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
	var broken, legacy []string
	minDH := 0
	for _, c := range scan.ciphers {
		g := suiteGradeOf(c)
		worst = min(worst, g)
		fs = fs || c.Version == "TLS 1.3" || strings.Contains(c.Name, "DHE_")
		switch g {
		case gradeNone:
			broken = appendSuite(broken, c)
		case gradeOld:
			legacy = appendSuite(legacy, c)
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

// suiteGradeOf is a suite's grade, lowered by a small DH group: under 1024
// bits no profile allows it, under 2048 only "old".
func suiteGradeOf(c CipherInfo) suiteGrade {
	g := map[string]suiteGrade{"none": gradeNone, "old": gradeOld, "intermediate": gradeIntermediate, "modern": gradeModern}[c.Profile]
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

// appendSuite adds "name (why)" once per name.
func appendSuite(list []string, c CipherInfo) []string {
	entry := fmt.Sprintf("%s (%s)", c.Name, c.Reason)
	if c.DHBits > 0 && c.DHBits < 2048 {
		entry = fmt.Sprintf("%s (%d-bit DH group)", c.Name, c.DHBits)
	}
	if slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, c.Name+" ") }) {
		return list
	}
	return append(list, entry)
}

// weakCipherFinding words the weak_cipher finding, if any.
func weakCipherFinding(profile string, broken, legacy []string, fs bool) (Finding, bool) {
	var parts []string
	if len(broken) > 0 {
		parts = append(parts, fmt.Sprintf("it accepts %d suite(s) that no Mozilla profile allows: %s", len(broken), listSuites(broken)))
	}
	if !fs {
		parts = append(parts, "no suite it accepts has forward secrecy (no ECDHE, DHE or TLS 1.3): recorded traffic can be decrypted with the server's key")
	}
	if len(parts) > 0 {
		if len(legacy) > 0 {
			parts = append(parts, fmt.Sprintf("%d more only miss Mozilla's intermediate profile", len(legacy)))
		}
		return Finding{Code: CodeWeakCipher, Severity: SeverityWarning, Message: strings.Join(parts, "; ")}, true
	}
	if len(legacy) == 0 {
		return Finding{}, false
	}
	return Finding{Code: CodeWeakCipher, Severity: SeverityInfo, Message: fmt.Sprintf(
		"the server meets Mozilla's %s profile, not intermediate: it accepts %s; modern clients never need them", profile, listSuites(legacy))}, true
}

func listSuites(list []string) string {
	if len(list) <= maxListedSuites {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:maxListedSuites], ", "), len(list)-maxListedSuites)
}
