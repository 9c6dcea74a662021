package auth

import (
	"context"
	"crypto/sha256"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// introspection is the part of an RFC 7662 answer tlswatch reads.
type introspection struct {
	Active   bool             `json:"active"`
	Scope    string           `json:"scope"`
	ClientID string           `json:"client_id"`
	Sub      string           `json:"sub"`
	Aud      jwt.Audience     `json:"aud"` // a string or an array
	Iss      string           `json:"iss"`
	Exp      *jwt.NumericDate `json:"exp"`
	Nbf      *jwt.NumericDate `json:"nbf"`
}

// introspect asks the introspection endpoint about an opaque token, reusing
// an active answer for IntrospectionTTL (never past its exp). The answer
// must bind the token to this resource (aud), just as a JWT must.
func (rs *ResourceServer) introspect(ctx context.Context, raw string) (Principal, error) {
	key := sha256.Sum256([]byte(raw))
	now := rs.cfg.Now()
	if p, ok := rs.cache.get(key, now); ok {
		return p, nil
	}
	var ans introspection
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	if err := rs.f.postForm(ctx, rs.cfg.IntrospectURL, form, rs.cfg.IntrospectClientID, rs.cfg.IntrospectClientSecret, &ans); err != nil {
		rs.cfg.Logger.Warn("token introspection failed", "endpoint", rs.cfg.IntrospectURL, "err", err)
		return Principal{}, errIntrospection
	}
	if !ans.Active {
		return Principal{}, errInactive
	}
	skew := rs.cfg.ClockSkew
	switch {
	case ans.Exp != nil && now.Add(-skew).After(ans.Exp.Time()):
		return Principal{}, errExpired
	case ans.Nbf != nil && now.Add(skew).Before(ans.Nbf.Time()):
		return Principal{}, errNotYetValid
	case ans.Iss != "" && rs.keysFor(ans.Iss) == nil:
		return Principal{}, errIssuer
	case !audienceMatches(ans.Aud, rs.cfg.Resource):
		return Principal{}, errAudience
	}
	sub := ans.Sub
	if sub == "" {
		sub = ans.ClientID
	}
	if sub == "" {
		return Principal{}, errNoSubject
	}
	p := Principal{Subject: sub, ClientID: ans.ClientID, Issuer: ans.Iss, Scopes: strings.Fields(ans.Scope)}
	until := now.Add(rs.cfg.IntrospectionTTL)
	if ans.Exp != nil && ans.Exp.Time().Before(until) {
		until = ans.Exp.Time()
	}
	rs.cache.put(key, p, until, now)
	return p, nil
}

// tokenCache holds active introspection answers by token digest, bounded:
// when full, expired entries go first, then arbitrary ones.
type tokenCache struct {
	max int
	mu  sync.Mutex
	m   map[[32]byte]cached
}

type cached struct {
	p     Principal
	until time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: map[[32]byte]cached{}}
}

func (c *tokenCache) get(k [32]byte, now time.Time) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return Principal{}, false
	}
	if !now.Before(e.until) {
		delete(c.m, k)
		return Principal{}, false
	}
	return e.p, true
}

func (c *tokenCache) put(k [32]byte, p Principal, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = cached{p, until}
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
