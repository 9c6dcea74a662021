package ari

import (
	"context"
	"sync"
	"time"
)

// maxCacheEntries bounds a Cache: a watcher of many endpoints keeps one
// entry per certificate and one per CA directory.
const maxCacheEntries = 4096

// Cache keeps directories and renewal windows until the time the CA named
// (Retry-After) or a day for directories, and lets concurrent probes of the
// same certificate wait for one request. Temporary failures (network, 5xx)
// are not kept. A nil *Cache keeps nothing. Safe for concurrent use.
type Cache struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	done    chan struct{}
	val     any
	err     error
	expires time.Time
}

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{m: map[string]*entry{}} }

// do returns the live entry for key, or runs fetch (once, however many
// callers ask at the same time). fetch returns how long its result stays
// valid; zero keeps it only for the callers already waiting.
func (c *Cache) do(ctx context.Context, key string, now time.Time, fetch func() (any, time.Duration, error)) (any, error) {
	if c == nil {
		v, _, err := fetch()
		return v, err
	}
	c.mu.Lock()
	e, ok := c.m[key]
	if ok {
		select {
		case <-e.done:
			if now.Before(e.expires) {
				c.mu.Unlock()
				return e.val, e.err
			}
			ok = false // stale: fetch again
		default:
		}
	}
	if !ok {
		e = &entry{done: make(chan struct{})}
		c.evict(now)
		c.m[key] = e
		c.mu.Unlock()
		v, ttl, err := fetch()
		c.mu.Lock()
		e.val, e.err, e.expires = v, err, now.Add(ttl)
		close(e.done)
		if ttl <= 0 && c.m[key] == e {
			delete(c.m, key)
		}
		c.mu.Unlock()
		return v, err
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.val, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// evict makes room for one more entry: expired ones go first, then any
// finished one. Called with mu held.
func (c *Cache) evict(now time.Time) {
	if len(c.m) < maxCacheEntries {
		return
	}
	for k, e := range c.m {
		select {
		case <-e.done:
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		default:
		}
	}
	for k, e := range c.m {
		if len(c.m) < maxCacheEntries {
			return
		}
		select {
		case <-e.done:
			delete(c.m, k)
		default:
		}
	}
}
