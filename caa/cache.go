package caa

import (
	"sync"
	"time"
)

// Cache lifetimes: a record set's own TTL, held between a minute and an
// hour; five minutes for a name without records.
const (
	minTTL      = time.Minute
	maxTTL      = time.Hour
	negativeTTL = 5 * time.Minute
	maxEntries  = 4096
)

// Cache keeps CAA answers per server and name. Failures are never kept. A
// nil *Cache keeps nothing. Safe for concurrent use.
type Cache struct {
	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	recs    []Record
	expires time.Time
}

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{m: map[string]cached{}} }

func (c *Cache) get(key string, now time.Time) ([]Record, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.recs, true
}

func (c *Cache) put(key string, recs []Record, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxEntries {
		for k, e := range c.m {
			if !e.expires.After(time.Now()) {
				delete(c.m, k)
			}
		}
		for k := range c.m { // still full: any one goes; a bound, not an LRU
			if len(c.m) < maxEntries {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = cached{recs: recs, expires: expires}
}
