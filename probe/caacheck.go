package probe

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tlswatch/tlswatch/caa"
)

// CAA: a CA checks the CAA records of every name at every issuance. When
// the records exclude the CA of the certificate in place, the next renewal
// fails, however well the automation works. Only the names of the leaf
// that cover the probed host are checked (the exact name, or the wildcard
// that covers it): those are what this endpoint needs renewed.

// analyseCAA fills Report.CAA and says caa_mismatch when the records of a
// name exclude the leaf's CA. An issuer tlswatch cannot map to CAA names is
// never guessed: nothing is looked up then (private CAs do not check CAA
// anyway), nor for names no public CA may certify (.test, .internal...).
func analyseCAA(ctx context.Context, p *probeRun) []Finding {
	if p.opts.NoCAA || len(p.served) == 0 {
		return nil
	}
	leaf := p.served[0]
	names := caaNames(leaf, p.target.Host)
	if len(names) == 0 {
		return nil
	}
	caName, ids := p.caaIdentities(ctx, leaf)
	if len(ids) == 0 {
		return nil // no verdict possible: not even a DNS query
	}
	info := &CAAInfo{CA: caName, Identities: ids, Names: []CAACheck{}}
	p.report.CAA = info
	r := caa.Resolver{Server: p.opts.DNSServer, Cache: p.opts.Cache.caa, Now: p.opts.Now}
	var refusals []string
	for _, n := range names {
		chk := CAACheck{Name: n}
		set, err := r.Relevant(ctx, n)
		if err != nil {
			chk.Error = err.Error()
			info.Names = append(info.Names, chk)
			continue
		}
		chk.RecordsAt = set.Name
		for _, rec := range set.Records {
			chk.Records = append(chk.Records, rec.String())
		}
		v := caa.Check(set, ids, strings.HasPrefix(n, "*."))
		chk.Permitted = &v.Permitted
		if !v.Permitted {
			refusals = append(refusals, fmt.Sprintf("for %s, %s", n, v.Reason))
		}
		info.Names = append(info.Names, chk)
	}
	if len(refusals) == 0 {
		return nil
	}
	return []Finding{NewFinding(CodeCAAMismatch, fmt.Sprintf(
		"CAA does not let %s (%s) issue: %s; the next renewal from this CA will be refused",
		info.CA, strings.Join(info.Identities, ", "), strings.Join(refusals, "; ")))}
}

// caaIdentities maps the leaf's issuer to a CA and its CAA names: the
// table's, plus its ACME directory's meta.caaIdentities when ARI is on. A
// catch-all CA (a bare --acme-directory) counts only once its ARI endpoint
// has recognised the certificate.
func (p *probeRun) caaIdentities(ctx context.Context, leaf *x509.Certificate) (string, []string) {
	ca, ok := matchCA(p.opts.CAs, leaf)
	if !ok {
		return "", nil
	}
	ids := slices.Clone(ca.CAAIdentities)
	if ca.ACMEDirectory != "" && !p.opts.NoARI {
		var dirIDs []string
		if ca.catchAll() {
			dir, _, err := p.renewalWindow(ctx, ca, leaf) // cached: the ARI check asks the same
			if err != nil {
				return "", nil
			}
			dirIDs = dir.CAAIdentities
		} else if dir, err := p.acmeFetcher().Directory(ctx, ca.ACMEDirectory); err == nil {
			dirIDs = dir.CAAIdentities
		}
		for _, id := range dirIDs {
			if id = caa.IssuerDomain(id); id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	} else if ca.catchAll() {
		return "", nil
	}
	if len(ids) == 0 {
		return "", nil
	}
	return ca.Name, ids
}

// caaNames are the leaf's DNS names that cover host: host itself, or the
// wildcard one label above it. None for an IP target or a name under a
// special-use or internal domain.
func caaNames(leaf *x509.Certificate, host string) []string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if _, err := netip.ParseAddr(host); err == nil || privateName(host) {
		return nil
	}
	_, parent, _ := strings.Cut(host, ".")
	var out []string
	for _, n := range leaf.DNSNames {
		n = strings.ToLower(n)
		if (n == host || (parent != "" && n == "*."+parent)) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// privateSuffixes are special-use domains (RFC 6761, RFC 8375), .internal
// (reserved by ICANN for private use) and .lan (common on home networks):
// no public CA certifies names under them.
var privateSuffixes = []string{"test", "example", "invalid", "localhost", "local", "internal", "home.arpa", "lan"}

// privateName: host is a single label or lies under a privateSuffixes domain.
func privateName(host string) bool {
	if !strings.Contains(host, ".") {
		return true
	}
	for _, s := range privateSuffixes {
		if host == s || strings.HasSuffix(host, "."+s) {
			return true
		}
	}
	return false
}
