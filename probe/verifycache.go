package probe

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"
)

// Signature checks dominate the probe's own CPU time, and a watcher or a
// scan sees the same served chain again and again. verifyChains remembers
// successful verifications of one exact served chain against one trust
// store, for as long as every certificate on the verified paths is valid.
// Failures are not cached: they are cheap (no path, few signatures) and
// must be rediscovered once the server is fixed.

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
}

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
	if ok && !now.Before(e.notBefore) && !now.After(e.notAfter) {
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
	verifyCache.Lock()
	if len(verifyCache.m) >= verifyCacheMax {
		for k := range verifyCache.m { // evict an arbitrary entry
			delete(verifyCache.m, k)
			break
		}
	}
	verifyCache.m[key] = e
	verifyCache.Unlock()
	return chains, nil
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
