package probe

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync"
	"time"
)

// Signature checks dominate the probe's own CPU time, and a watcher or a
// scan sees the same served chain again and again. verifyChains remembers
// successful verifications of one exact served chain against one trust
// store, for as long as every certificate on the verified paths is valid.
//
// Unknown-authority failures are cached too, briefly (negativeTTL around
// the clock they were computed at, and never across a validity boundary of
// a served certificate): a private-CA chain (--ca-file) fails against the
// system store and the Mozilla bundle on every probe, and those two
// failed verifications were a third of the probe's own CPU time (profile
// of BenchmarkCheckTLS, issue 7). A fixed server serves other bytes, so it
// gets another key. Other failures (expired or invalid certificates in
// the path) are not cached: their errors point at the caller's
// certificates and are classified by identity.

const verifyCacheMax = 4096

type verifyKey struct {
	roots    *x509.CertPool
	sum      [sha256.Size]byte
	anyUsage bool
}

type verifyEntry struct {
	chains    [][]*x509.Certificate
	notBefore time.Time
	notAfter  time.Time
	// uaErr is a cached failure; chains is nil then, and the entry holds
	// for clocks strictly between notBefore and notAfter.
	uaErr *x509.UnknownAuthorityError
}

// negativeTTL bounds a cached unknown-authority failure around the clock
// it was computed at: a root of the pool entering or leaving its validity
// changes the verdict, and the pool's roots are not enumerated.
const negativeTTL = 10 * time.Minute

var verifyCache = struct {
	sync.Mutex
	m map[verifyKey]verifyEntry
}{m: map[verifyKey]verifyEntry{}}

// verifyChains is x509.Verify of leaf with intermediates against roots at
// now (extended key usage server auth, or any when anyUsage), cached. roots
// must not be nil. The returned chains use the caller's certificate values.
func verifyChains(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time, anyUsage bool) ([][]*x509.Certificate, error) {
	h := sha256.New()
	h.Write(leaf.Raw)
	for _, c := range intermediates {
		h.Write([]byte{0})
		h.Write(c.Raw)
	}
	key := verifyKey{roots: roots, anyUsage: anyUsage}
	h.Sum(key.sum[:0])

	verifyCache.Lock()
	e, ok := verifyCache.m[key]
	verifyCache.Unlock()
	if ok && e.uaErr != nil && now.After(e.notBefore) && now.Before(e.notAfter) {
		ua := *e.uaErr
		ua.Cert = sameCert(ua.Cert, leaf, intermediates)
		return nil, ua
	}
	if ok && e.uaErr == nil && !now.Before(e.notBefore) && !now.After(e.notAfter) {
		return rebase(e.chains, leaf, intermediates), nil
	}

	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	vo := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}
	if anyUsage {
		vo.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	chains, err := leaf.Verify(vo)
	if err != nil {
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			return nil, err
		}
		storeVerify(key, negativeEntry(&ua, leaf, intermediates, now))
		return nil, err
	}
	e = verifyEntry{chains: chains, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	for _, ch := range chains {
		for _, c := range ch {
			if c.NotBefore.After(e.notBefore) {
				e.notBefore = c.NotBefore
			}
			if c.NotAfter.Before(e.notAfter) {
				e.notAfter = c.NotAfter
			}
		}
	}
	storeVerify(key, e)
	return chains, nil
}

// negativeEntry caches ua, computed at now, for the open interval around
// now that crosses no validity boundary of a served certificate and lasts
// at most negativeTTL either side.
func negativeEntry(ua *x509.UnknownAuthorityError, leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time) verifyEntry {
	e := verifyEntry{uaErr: ua, notBefore: now.Add(-negativeTTL), notAfter: now.Add(negativeTTL)}
	for _, c := range append([]*x509.Certificate{leaf}, intermediates...) {
		for _, b := range []time.Time{c.NotBefore, c.NotAfter} {
			if b.After(now) {
				if b.Before(e.notAfter) {
					e.notAfter = b
				}
			} else if b.After(e.notBefore) {
				e.notBefore = b
			}
		}
	}
	return e
}

// sameCert returns the caller's certificate with the same bytes as c, or c.
func sameCert(c, leaf *x509.Certificate, intermediates []*x509.Certificate) *x509.Certificate {
	if c == nil {
		return nil
	}
	if leaf.Equal(c) {
		return leaf
	}
	for _, s := range intermediates {
		if s.Equal(c) {
			return s
		}
	}
	return c
}

func storeVerify(key verifyKey, e verifyEntry) {
	verifyCache.Lock()
	if len(verifyCache.m) >= verifyCacheMax {
		for k := range verifyCache.m { // evict an arbitrary entry
			delete(verifyCache.m, k)
			break
		}
	}
	verifyCache.m[key] = e
	verifyCache.Unlock()
}

// rebase copies cached chains, swapping in the caller's certificate values
// (same bytes) so that identity comparisons with the served chain hold.
func rebase(chains [][]*x509.Certificate, leaf *x509.Certificate, intermediates []*x509.Certificate) [][]*x509.Certificate {
	out := make([][]*x509.Certificate, len(chains))
	for i, ch := range chains {
		nc := make([]*x509.Certificate, len(ch))
		for j, c := range ch {
			nc[j] = c
			if j == 0 {
				nc[j] = leaf
				continue
			}
			for _, s := range intermediates {
				if s.Equal(c) {
					nc[j] = s
					break
				}
			}
		}
		out[i] = nc
	}
	return out
}
