package probe

import (
	"github.com/tlswatch/tlswatch/ari"
	"github.com/tlswatch/tlswatch/caa"
)

// Cache holds what probes can share: chain verifications that succeeded
// (valid while every certificate on the path is), AIA downloads (an hour),
// OCSP answers and CRLs (until their nextUpdate, an hour at most), ACME
// directories (a day) and renewal windows (the CA's Retry-After, a minute
// to a day), and CAA answers (their TTL, a minute to an hour). Failures of
// the server probed are never kept: a fixed server must be seen at once.
//
// A Cache is safe for concurrent use by any number of probes. A process
// that probes the same servers again and again (serve, a watcher, a scan)
// creates one with NewCache and passes it in every Options; the zero value
// of Options.Cache (nil) gives each Run a Cache of its own, so that nothing
// is shared between probes while one probe (and the per-address probes it
// starts) still never verifies or downloads the same thing twice.
type Cache struct {
	verify *verifyCache
	aia    *aiaCache
	rev    *expiringCache
	ari    *ari.Cache
	caa    *caa.Cache
}

// Bounds of a Cache: entries beyond them evict others.
const (
	verifyCacheMax     = 4096
	aiaCacheMax        = 256
	revocationCacheMax = 512
)

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{
		verify: &verifyCache{m: map[verifyKey]verifyEntry{}},
		aia:    &aiaCache{m: map[string]*aiaEntry{}},
		rev:    &expiringCache{m: map[string]expiringEntry{}, max: revocationCacheMax},
		ari:    ari.NewCache(),
		caa:    caa.NewCache(),
	}
}
