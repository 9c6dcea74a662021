package caa

import (
	"fmt"
	"slices"
	"strings"
)

// knownTags are the property tags a CA understands (RFC 8659, RFC 9495 and
// the mail and VMC tags of the CA/Browser Forum). An unknown tag flagged
// critical forbids issuance.
var knownTags = []string{"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}

// Verdict is whether a CA may issue for a name under a record set.
type Verdict struct {
	Permitted bool
	// Reason explains a refusal (empty when permitted).
	Reason string
}

// Check applies set to a CA known by its CAA issuer names (identities,
// such as "letsencrypt.org") for a certificate name; wildcard means the
// name is a wildcard (issuewild records, when any, then govern). Account
// and validation-method parameters are not judged: tlswatch cannot know
// the account a renewal uses.
func Check(set Set, identities []string, wildcard bool) Verdict {
	var issue, wild []Record
	for _, r := range set.Records {
		switch tag := strings.ToLower(r.Tag); {
		case tag == "issue":
			issue = append(issue, r)
		case tag == "issuewild":
			wild = append(wild, r)
		case r.Critical() && !slices.Contains(knownTags, tag):
			return Verdict{Reason: fmt.Sprintf("the record %s is flagged critical and CAs do not know the tag %q: no CA may issue", r, r.Tag)}
		}
	}
	rules, kind := issue, "issue"
	if wildcard && len(wild) > 0 {
		rules, kind = wild, "issuewild"
	}
	if len(rules) == 0 {
		return Verdict{Permitted: true} // no issue restriction at all
	}
	var allowed []string
	for _, r := range rules {
		dom := IssuerDomain(r.Value)
		if dom == "" {
			continue // ";" alone: no CA by this record
		}
		if slices.Contains(identities, dom) {
			return Verdict{Permitted: true}
		}
		allowed = append(allowed, dom)
	}
	who := "no CA"
	if len(allowed) > 0 {
		who = "only " + strings.Join(allowed, ", ")
	}
	return Verdict{Reason: fmt.Sprintf("the %s records of %s allow %s", kind, set.Name, who)}
}

// IssuerDomain is the CA named by an issue or issuewild value, lower case:
// the text before any ';' parameters; empty for a value that names none.
func IssuerDomain(value string) string {
	dom, _, _ := strings.Cut(value, ";")
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(dom), "."))
}
