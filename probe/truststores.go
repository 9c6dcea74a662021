package probe

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Trust stores: agents rarely use the store of the machine where a developer
// tested. Go and curl on Linux read the system store; Node and Python
// (certifi) carry Mozilla's; an operator may add a private CA. The same chain
// is verified against each so that "works for me" can be explained.

// Trust store names, as reported in TrustVerdict.Store.
const (
	StoreConfigured = "configured" // Options.Roots: what `trusted` is computed against
	StoreSystem     = "system"     // the operating system's roots (x509.SystemCertPool)
	StoreMozilla    = "mozilla"    // the NSS/Mozilla bundle (Node, Python certifi, Firefox)
	StoreCustom     = "custom"     // the --ca-file roots alone (Options.CustomRoots)
)

var (
	mozillaOnce  sync.Once
	mozillaPool  *x509.CertPool
	mozillaRoots map[[32]byte]bool // SHA-256 of each bundled root
)

// mozillaBundle returns the Mozilla (NSS) root bundle shipped in
// golang.org/x/crypto/x509roots/fallback/bundle, built once. Unlike importing
// the fallback package it does not replace the process's fallback roots:
// tlswatch must never trust more than the operator configured.
// Distrust-after constraints of the bundle are kept.
func mozillaBundle() *x509.CertPool {
	mozillaOnce.Do(func() {
		mozillaPool = x509.NewCertPool()
		mozillaRoots = map[[32]byte]bool{}
		for r := range bundle.Roots() {
			c, err := x509.ParseCertificate(r.Certificate)
			if err != nil {
				continue // one unparsable root must not cost the others
			}
			mozillaRoots[sha256.Sum256(c.Raw)] = true
			if r.Constraint == nil {
				mozillaPool.AddCert(c)
			} else {
				mozillaPool.AddCertWithConstraint(c, r.Constraint)
			}
		}
	})
	return mozillaPool
}

// trustStoreInput is the chain as served and the stores to compare.
type trustStoreInput struct {
	Leaf          *x509.Certificate
	Intermediates []*x509.Certificate // as served (no AIA: `trusted` does not fetch either)
	Now           time.Time
	Configured    *x509.CertPool // Options.Roots
	Custom        *x509.CertPool // Options.CustomRoots; nil when none
	// System and Mozilla override the stores (tests); nil means the real ones.
	System  *x509.CertPool
	Mozilla *x509.CertPool
	// cache keeps successful verifications (nil keeps nothing).
	cache *verifyCache
}

// checkTrustStores verifies the chain against each store and reports
// untrusted_elsewhere when the verdicts disagree in a way an agent would
// feel:
//   - trusted only thanks to the custom (--ca-file) roots: every agent
//     without that CA fails;
//   - the configured store trusts it but Mozilla's bundle, which has the
//     same root, refuses (a distrusted CA: Node and Python agents fail);
//   - Mozilla's bundle trusts it and the configured store does not (an
//     outdated system store: Go and curl here fail where others succeed).
//
// A chain anchored at a root found in no public store (a private CA installed
// system-wide) is reported per store but is not a finding: that is a choice.
func checkTrustStores(in trustStoreInput) ([]TrustVerdict, []Finding) {
	if in.Leaf == nil {
		return nil, nil
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	// verifyChains caches per served chain and store, so the configured
	// store's verdict (just computed by the core) and the fixed system and
	// Mozilla pools cost nothing on a repeat probe.
	verify := func(pool *x509.CertPool) ([][]*x509.Certificate, error) {
		if pool == nil {
			return nil, errors.New("store not available")
		}
		return in.cache.verifyChains(in.Leaf, in.Intermediates, pool, in.Now, false)
	}
	verdict := func(name string, chains [][]*x509.Certificate, err error) TrustVerdict {
		v := TrustVerdict{Store: name, Trusted: err == nil}
		if err != nil {
			v.Error = trustErrorText(err)
		}
		return v
	}

	var out []TrustVerdict
	confChains, confErr := verify(in.Configured)
	out = append(out, verdict(StoreConfigured, confChains, confErr))

	sys := in.System
	var sysErr error
	if sys == nil {
		// SystemRoots (probe.go) returns an empty pool when the platform
		// has none: the chain then simply fails to verify against it.
		sys, _ = SystemRoots()
	}
	var sysChains [][]*x509.Certificate
	if sysErr == nil {
		sysChains, sysErr = verify(sys)
	}
	out = append(out, verdict(StoreSystem, sysChains, sysErr))

	moz := in.Mozilla
	if moz == nil {
		moz = mozillaBundle()
	}
	_, mozErr := verify(moz)
	out = append(out, verdict(StoreMozilla, nil, mozErr))

	var custErr error = errors.New("no custom roots configured")
	if in.Custom != nil {
		_, custErr = verify(in.Custom)
		out = append(out, verdict(StoreCustom, nil, custErr))
	}

	var fs []Finding
	switch {
	case confErr == nil && in.Custom != nil && custErr == nil && sysErr != nil && mozErr != nil:
		// The operator chose this CA: worth saying, not a defect of the
		// server (info, so a private endpoint they trust can be "ok").
		fs = append(fs, Finding{Code: CodeUntrustedElsewhere, Severity: SeverityInfo,
			Message: "trusted only through the custom --ca-file roots: neither the system store nor the Mozilla bundle (used by Node and Python agents) trusts this chain, so every agent without your CA fails"})
	case confErr == nil && mozErr != nil && anchoredAtMozillaRoot(confChains, in.Mozilla == nil):
		fs = append(fs, Finding{Code: CodeUntrustedElsewhere, Severity: SeverityWarning,
			Message: "trusted by the configured store but refused by the Mozilla bundle, which distrusts this root for certificates like this one (" + trustErrorText(mozErr) + "); Node, Python (certifi) and Firefox clients fail"})
	case confErr != nil && mozErr == nil:
		fs = append(fs, Finding{Code: CodeUntrustedElsewhere, Severity: SeverityWarning,
			Message: "refused by the configured store but trusted by the Mozilla bundle: the local trust store is probably outdated; Go and curl on this machine fail where Node and Python agents succeed"})
	}
	return out, fs
}

// anchoredAtMozillaRoot reports whether some verified chain ends at a root
// that the Mozilla bundle contains (so its refusal is a distrust, not a
// private CA). Only meaningful for the real bundle.
func anchoredAtMozillaRoot(chains [][]*x509.Certificate, realBundle bool) bool {
	if !realBundle {
		return false
	}
	mozillaBundle()
	for _, ch := range chains {
		if len(ch) > 0 && mozillaRoots[sha256.Sum256(ch[len(ch)-1].Raw)] {
			return true
		}
	}
	return false
}

// trustErrorText says in a few words why a store refused the chain,
// classifying x509's typed errors.
func trustErrorText(err error) string {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return "unknown authority"
	case errors.As(err, &ci):
		switch ci.Reason {
		case x509.Expired:
			return "a certificate in the path is expired or not yet valid"
		case x509.IncompatibleUsage:
			return "key usage not valid for a server"
		case x509.NameConstraintsWithoutSANs, x509.CANotAuthorizedForThisName:
			return "name constraints"
		}
		return strings.TrimPrefix(ci.Error(), "x509: ")
	case errors.As(err, &he):
		return "name mismatch"
	}
	return fmt.Sprint(err)
}
