package probe

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tlswatch/tlswatch/ari"
)

// CA is a certificate authority as renewal advice (ACME ARI) and the CAA
// check need it: how to recognise its certificates, its ACME directory and
// the names CAA records use for it.
//
// A leaf belongs to a CA when its issuer's organization (any O value) or
// common name equals one of Issuers, ignoring case, or its authority key
// identifier equals one of AKIs. A CA with neither matches every leaf that
// no other CA matches: an operator's private ACME CA given as a bare
// --acme-directory URL. For such a CA, CAA is judged only once its ARI
// endpoint has recognised the certificate (proof that it issued it), so
// tlswatch never guesses an issuer.
type CA struct {
	Name          string
	Issuers       []string
	AKIs          [][]byte
	ACMEDirectory string   // https URL; empty when the CA publishes no ARI
	CAAIdentities []string // CAA issuer names; the directory's meta.caaIdentities are added
}

func (c CA) catchAll() bool { return len(c.Issuers) == 0 && len(c.AKIs) == 0 }

// PublicCAs are the public CAs tlswatch knows: those that publish ACME
// Renewal Information with their directory, and the largest others with
// the CAA names they honour (as each CA documents them).
var PublicCAs = []CA{
	{Name: "Let's Encrypt", Issuers: []string{"Let's Encrypt"},
		ACMEDirectory: "https://acme-v02.api.letsencrypt.org/directory", CAAIdentities: []string{"letsencrypt.org"}},
	{Name: "Let's Encrypt (staging)", Issuers: []string{"(STAGING) Let's Encrypt"},
		ACMEDirectory: "https://acme-staging-v02.api.letsencrypt.org/directory", CAAIdentities: []string{"letsencrypt.org"}},
	{Name: "Google Trust Services", Issuers: []string{"Google Trust Services", "Google Trust Services LLC"},
		ACMEDirectory: "https://dv.acme-v02.api.pki.goog/directory", CAAIdentities: []string{"pki.goog"}},
	{Name: "DigiCert", Issuers: []string{"DigiCert Inc", "DigiCert, Inc."},
		CAAIdentities: []string{"digicert.com", "symantec.com", "geotrust.com", "rapidssl.com", "thawte.com"}},
	{Name: "Sectigo", Issuers: []string{"Sectigo Limited", "COMODO CA Limited"},
		CAAIdentities: []string{"sectigo.com", "comodoca.com", "comodo.com", "usertrust.com", "trust-provider.com"}},
	{Name: "ZeroSSL", Issuers: []string{"ZeroSSL"}, CAAIdentities: []string{"sectigo.com", "zerossl.com"}},
	{Name: "Amazon", Issuers: []string{"Amazon"},
		CAAIdentities: []string{"amazon.com", "amazontrust.com", "awstrust.com", "amazonaws.com"}},
	{Name: "GlobalSign", Issuers: []string{"GlobalSign nv-sa"}, CAAIdentities: []string{"globalsign.com"}},
	{Name: "SSL.com", Issuers: []string{"SSL Corporation"}, CAAIdentities: []string{"ssl.com"}},
	{Name: "Entrust", Issuers: []string{"Entrust, Inc."}, CAAIdentities: []string{"entrust.net"}},
}

// matchCA finds the CA of leaf: the first CA whose issuer names or key
// identifiers match, else the first catch-all CA.
func matchCA(cas []CA, leaf *x509.Certificate) (CA, bool) {
	names := append(append([]string(nil), leaf.Issuer.Organization...), leaf.Issuer.CommonName)
	for _, ca := range cas {
		for _, aki := range ca.AKIs {
			if len(leaf.AuthorityKeyId) > 0 && bytes.Equal(aki, leaf.AuthorityKeyId) {
				return ca, true
			}
		}
		for _, want := range ca.Issuers {
			for _, n := range names {
				if n != "" && strings.EqualFold(n, want) {
					return ca, true
				}
			}
		}
	}
	for _, ca := range cas {
		if ca.catchAll() {
			return ca, true
		}
	}
	return CA{}, false
}

// ParseACMEDirectory reads an operator's --acme-directory: a bare https URL
// (a catch-all CA: every leaf no other CA claims), or MATCH=URL where
// MATCH is an issuer organization or common name, or aki:HEX for the
// authority key identifier of the leaves (colons allowed in HEX). Errors
// are *FieldError on field "acme-directory".
func ParseACMEDirectory(spec string) (CA, error) {
	bad := func(reason string) error {
		return &FieldError{Field: "acme-directory", Reason: fmt.Sprintf("%q: %s", spec, reason)}
	}
	spec = strings.TrimSpace(spec)
	match, u := "", spec
	if !strings.HasPrefix(strings.ToLower(spec), "https://") {
		var ok bool
		if match, u, ok = strings.Cut(spec, "="); !ok {
			return CA{}, bad("want an https URL, or ISSUER=URL, or aki:HEX=URL")
		}
	}
	if err := ari.CheckDirectoryURL(u); err != nil {
		return CA{}, bad(err.Error())
	}
	ca := CA{Name: u, ACMEDirectory: u}
	switch rest, isAKI := strings.CutPrefix(match, "aki:"); {
	case match == "":
	case isAKI:
		aki, err := hex.DecodeString(strings.ReplaceAll(rest, ":", ""))
		if err != nil || len(aki) == 0 {
			return CA{}, bad("aki: want the key identifier in hex")
		}
		ca.AKIs = [][]byte{aki}
	default:
		ca.Issuers = []string{match}
		ca.Name = match
	}
	return ca, nil
}
