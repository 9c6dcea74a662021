package probe

import (
	"crypto/sha256"
	"crypto/x509"
	"runtime"
	"sync"
	"time"
)

// Signature checks dominate the probe's own CPU time, and a watcher or a
// scan sees the same served chain again and again. A verifyCache (part of a
// Cache) remembers successful verifications of one exact served chain
// against one trust store, for as long as every certificate on the
// verified paths is valid.
// Failures are not cached: they must be rediscovered once the server is
// fixed. The common failure is made cheap instead: a chain that no root of
// the store can anchor (a private CA checked against the system store and
// the Mozilla bundle on every probe, an incomplete chain) is refused
// without a signature check; see unanchored.

type verifyKey struct {
	roots    *x509.CertPool
	sum      [sha256.Size]byte
	anyUsage bool
}

type verifyEntry struct {
	chains    [][]*x509.Certificate
	notBefore time.Time
	notAfter  time.Time
}

// verifyCache is safe for concurrent use; a nil *verifyCache caches nothing.
type verifyCache struct {
	mu sync.Mutex
	m  map[verifyKey]verifyEntry
}

// verifyChains is x509.Verify of leaf with intermediates against roots at
// now (extended key usage server auth, or any when anyUsage), cached in c.
// roots must not be nil. The returned chains use the caller's certificate
// values.
func (c *verifyCache) verifyChains(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time, anyUsage bool) ([][]*x509.Certificate, error) {
	key := chainKey(leaf, intermediates, roots, anyUsage)
	if e, ok := c.get(key); ok && !now.Before(e.notBefore) && !now.After(e.notAfter) {
		return rebase(e.chains, leaf, intermediates), nil
	}

	if unanchored(leaf, intermediates, roots, now) {
		return nil, x509.UnknownAuthorityError{Cert: leaf}
	}

	inter := x509.NewCertPool()
	for _, ic := range intermediates {
		inter.AddCert(ic)
	}
	vo := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}
	if anyUsage {
		vo.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	chains, err := leaf.Verify(vo)
	if err != nil {
		return nil, err
	}
	e := verifyEntry{chains: chains, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	for _, ch := range chains {
		for _, pc := range ch {
			if pc.NotBefore.After(e.notBefore) {
				e.notBefore = pc.NotBefore
			}
			if pc.NotAfter.Before(e.notAfter) {
				e.notAfter = pc.NotAfter
			}
		}
	}
	c.put(key, e)
	return chains, nil
}

// chainKey identifies one served chain verified against one store.
func chainKey(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, anyUsage bool) verifyKey {
	h := sha256.New()
	h.Write(leaf.Raw)
	for _, c := range intermediates {
		h.Write([]byte{0})
		h.Write(c.Raw)
	}
	key := verifyKey{roots: roots, anyUsage: anyUsage}
	h.Sum(key.sum[:0])
	return key
}

func (c *verifyCache) get(k verifyKey) (verifyEntry, bool) {
	if c == nil {
		return verifyEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	return e, ok
}

func (c *verifyCache) put(k verifyKey, e verifyEntry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= verifyCacheMax {
		for old := range c.m { // evict an arbitrary entry
			delete(c.m, old)
			break
		}
	}
	c.m[k] = e
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

// unanchored reports, without checking a signature, that Verify of leaf
// with intermediates against roots at now must fail with an
// UnknownAuthorityError: no certificate of the chain names an issuer (or
// is a subject) found in roots, so crypto/x509 finds no root candidate,
// and every certificate passes the checks crypto/x509 makes before a
// failure could take another type (unhandled critical extensions,
// validity at now, CA flag and path length of the intermediates, the
// signature-check budget). When any of that does not hold it returns
// false and the caller runs the real Verify. In the profile of
// BenchmarkScan2000 the system and Mozilla verifications of a private-CA
// chain were half of the probe's signature checks.
//
// On macOS, iOS and Windows a system pool is verified by the platform, so
// it never answers there.
func unanchored(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time) bool {
	switch runtime.GOOS {
	case "darwin", "ios", "windows":
		return false
	}
	if roots == nil || len(intermediates) > 4 || !timeValid(leaf, now) || len(leaf.UnhandledCriticalExtensions) > 0 {
		return false
	}
	// An intermediate has at most len(intermediates)-1 others below it on
	// any path, so a path length constraint at least that large can never
	// fail. (Bounding it by len(intermediates) instead made every chain of
	// an intermediate with pathlen 0, the usual kind, take the real Verify.)
	for _, c := range intermediates {
		if !timeValid(c, now) || len(c.UnhandledCriticalExtensions) > 0 || !c.BasicConstraintsValid || !c.IsCA ||
			(c.MaxPathLen >= 0 && c.MaxPathLen < len(intermediates)-1) {
			return false
		}
	}
	subjects := subjectsOf(roots)
	if subjects[string(leaf.RawSubject)] || subjects[string(leaf.RawIssuer)] {
		return false
	}
	for _, c := range intermediates {
		if subjects[string(c.RawIssuer)] {
			return false
		}
	}
	return true
}

// poolSubjects caches the subjects of each trust store unanchored has
// seen. A probe compares its chain with two or three stores of hundreds of
// roots, and CertPool.Subjects copies every one of them on each call. The
// stores are built once per process (system, Mozilla, the operator's) and
// never changed after, so the cache is keyed by the pool itself; its size
// is bounded anyway, for a caller that builds pools per probe.
var poolSubjects = struct {
	sync.Mutex
	m map[*x509.CertPool]map[string]bool
}{m: map[*x509.CertPool]map[string]bool{}}

const poolSubjectsMax = 64

func subjectsOf(pool *x509.CertPool) map[string]bool {
	poolSubjects.Lock()
	defer poolSubjects.Unlock()
	if s, ok := poolSubjects.m[pool]; ok {
		return s
	}
	// Subjects is deprecated only because it omits the platform roots of
	// a system pool on macOS and Windows, excluded by the caller.
	set := map[string]bool{}
	for _, s := range pool.Subjects() {
		set[string(s)] = true
	}
	if len(poolSubjects.m) >= poolSubjectsMax {
		clear(poolSubjects.m)
	}
	poolSubjects.m[pool] = set
	return set
}

func timeValid(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && !now.After(c.NotAfter)
}
