package probe

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"
)

// When the certificate that issued the last served one is neither served,
// nor in the trust store, nor reachable through AIA, the probe cannot see
// it and must say what it most likely is: a missing intermediate
// (incomplete_chain) or an unknown root (untrusted_root). It weighs what
// it knows: the roots configured, the --ca-file roots the operator gave,
// and the missing issuer's name.

// issuerGuess is the verdict on an issuer the probe cannot see.
type issuerGuess int

const (
	guessEither       issuerGuess = iota // no evidence either way: name both
	guessIntermediate                    // incomplete_chain
	guessRoot                            // untrusted_root
)

// issuerEvidence is a guess and the evidence for it, worded for a message.
type issuerEvidence struct {
	guess issuerGuess
	why   string
}

// weighIssuer judges the unseen issuer of top. custom are the operator's
// --ca-file roots (nil when none were given); roots is the whole store.
func weighIssuer(top *x509.Certificate, roots, custom *x509.CertPool) issuerEvidence {
	issuer := top.Issuer.String()
	if poolHasSubject(roots, top.RawIssuer) {
		return issuerEvidence{guessRoot, fmt.Sprintf(
			"the trust store has a root of that name, but its key did not sign this certificate (authority key ID %x): another CA of the same name issued it", top.AuthorityKeyId)}
	}
	kind := nameKind(top.Issuer.CommonName)
	if kind == nameRoot {
		return issuerEvidence{guessRoot, fmt.Sprintf("by its name, %s is a root CA", issuer)}
	}
	customNames := poolNames(custom)
	if parent, how := relatedName(top.Issuer, customNames); parent != "" {
		return issuerEvidence{guessIntermediate, fmt.Sprintf(
			"%s is most likely an intermediate under your --ca-file root %s (%s)", issuer, parent, how)}
	}
	if len(customNames) > 0 {
		var names []string
		for _, n := range customNames {
			names = append(names, n.String())
		}
		return issuerEvidence{guessEither, fmt.Sprintf(
			"nothing relates %s to your --ca-file roots (%s)", issuer, strings.Join(names, "; "))}
	}
	if kind == nameIntermediate {
		return issuerEvidence{guessIntermediate, fmt.Sprintf("by its name, %s is an intermediate CA", issuer)}
	}
	return issuerEvidence{guessRoot, ""}
}

type nameClass int

const (
	nameNeutral nameClass = iota
	nameRoot
	nameIntermediate
)

// nameKind reads what a CA calls itself: "… Root CA" or "… Intermediate /
// Issuing / Sub CA".
func nameKind(cn string) nameClass {
	words := nameWords(cn)
	switch {
	case slices.Contains(words, "root"):
		return nameRoot
	case slices.ContainsFunc(words, func(w string) bool {
		return w == "intermediate" || w == "issuing" || w == "sub" || w == "subordinate" || w == "ica"
	}):
		return nameIntermediate
	}
	return nameNeutral
}

// genericWords say what kind of CA a name is, not whose.
var genericWords = []string{"root", "intermediate", "issuing", "sub", "subordinate", "ica", "ca", "certificate",
	"certification", "authority", "tls", "ssl", "server", "servers", "the", "of", "for", "and", "g1", "g2", "g3", "g4", "r1", "r2", "r3"}

// relatedName finds among roots one that the name issuer belongs with: the
// same organization, or a distinctive word of the common name in common.
func relatedName(issuer pkix.Name, roots []pkix.Name) (string, string) {
	for _, r := range roots {
		for _, o := range issuer.Organization {
			if slices.Contains(r.Organization, o) {
				return r.String(), fmt.Sprintf("same organization %q", o)
			}
		}
	}
	for _, r := range roots {
		rw := nameWords(r.CommonName)
		for _, w := range nameWords(issuer.CommonName) {
			if !slices.Contains(genericWords, w) && len(w) > 1 && strings.Trim(w, "0123456789") != "" && slices.Contains(rw, w) {
				return r.String(), fmt.Sprintf("both names say %q", w)
			}
		}
	}
	return "", ""
}

func nameWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
}

// poolNames parses the subject names of pool (the operator's roots).
func poolNames(pool *x509.CertPool) []pkix.Name {
	if pool == nil {
		return nil
	}
	var out []pkix.Name
	for _, raw := range pool.Subjects() {
		var rdn pkix.RDNSequence
		if _, err := asn1.Unmarshal(raw, &rdn); err != nil {
			continue
		}
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		out = append(out, n)
	}
	return out
}
