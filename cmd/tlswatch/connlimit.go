package main

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter bounds the HTTP listener's open connections. At the bound, a
// new connection makes room by closing the connection that has waited
// longest without a request in progress (one still sending its headers, or
// an idle keep-alive): thousands of idle or dripping connections cannot
// lock a legitimate client out, and the descriptors stay within the
// process's limit. When every connection is serving a request, the new one
// is closed instead.
type connLimiter struct {
	net.Listener
	max    int
	now    func() time.Time
	logger *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]*connInfo
	warned time.Time
}

type connInfo struct {
	active bool      // a request is in progress
	since  time.Time // accepted, or idle since
}

func newConnLimiter(ln net.Listener, max int, logger *slog.Logger) *connLimiter {
	return &connLimiter{Listener: ln, max: max, now: time.Now, logger: logger, conns: map[net.Conn]*connInfo{}}
}

// Accept admits one more connection, evicting a waiting one at the bound.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		var victim net.Conn
		if len(l.conns) >= l.max {
			victim = l.oldestWaiting()
			if victim != nil {
				delete(l.conns, victim)
			}
		}
		admit := len(l.conns) < l.max
		if admit {
			l.conns[c] = &connInfo{since: l.now()}
		}
		l.warnLocked(victim != nil || !admit)
		l.mu.Unlock()
		if victim != nil {
			victim.Close()
		}
		if admit {
			return c, nil
		}
		c.Close()
	}
}

// oldestWaiting is the connection without a request in progress that has
// waited longest; nil when all are serving. Caller holds l.mu.
func (l *connLimiter) oldestWaiting() net.Conn {
	var best net.Conn
	var bestAt time.Time
	for c, ci := range l.conns {
		if !ci.active && (best == nil || ci.since.Before(bestAt)) {
			best, bestAt = c, ci.since
		}
	}
	return best
}

// warnLocked logs, at most once a minute, that the bound was reached.
func (l *connLimiter) warnLocked(hit bool) {
	if hit && l.now().Sub(l.warned) > time.Minute {
		l.warned = l.now()
		l.logger.Warn("connection limit reached: closing the longest-waiting connections (see --max-connections)", "limit", l.max)
	}
}

// ConnState is the http.Server hook that keeps the states.
func (l *connLimiter) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ci := l.conns[c]
	switch {
	case s == http.StateClosed || s == http.StateHijacked:
		delete(l.conns, c)
	case ci == nil:
	case s == http.StateActive:
		ci.active = true
	case s == http.StateIdle:
		ci.active, ci.since = false, l.now()
	}
}

// open is the number of connections held.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
