package tools

import (
	"context"
	"fmt"
	"sync"

	"github.com/mark3labs/mcp-go/server"
)

// probeLimiter bounds the probes in flight: per server (every session
// together) and per session, so one client cannot take all the slots.
// Sessions without an ID (2026-07-28 requests are sessionless) share only
// the server-wide bound.
type probeLimiter struct {
	global     chan struct{}
	perSession int

	mu       sync.Mutex
	sessions map[string]*sessionSlots
}

type sessionSlots struct {
	slots chan struct{}
	users int // acquirers holding or waiting; the entry goes at zero
}

func newProbeLimiter(global, perSession int) *probeLimiter {
	return &probeLimiter{global: make(chan struct{}, global), perSession: perSession, sessions: map[string]*sessionSlots{}}
}

// acquire waits for a slot (the session's, then the server's) or ctx's end.
func (l *probeLimiter) acquire(ctx context.Context) (release func(), err error) {
	var sid string
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		sid = cs.SessionID()
	}
	var ss *sessionSlots
	if sid != "" {
		l.mu.Lock()
		ss = l.sessions[sid]
		if ss == nil {
			ss = &sessionSlots{slots: make(chan struct{}, l.perSession)}
			l.sessions[sid] = ss
		}
		ss.users++
		l.mu.Unlock()
	}
	leave := func() {
		if ss == nil {
			return
		}
		l.mu.Lock()
		ss.users--
		if ss.users == 0 {
			delete(l.sessions, sid)
		}
		l.mu.Unlock()
	}
	if ss != nil {
		select {
		case ss.slots <- struct{}{}:
		case <-ctx.Done():
			leave()
			return nil, fmt.Errorf("waiting for a free probe slot: %w", ctx.Err())
		}
	}
	select {
	case l.global <- struct{}{}:
	case <-ctx.Done():
		if ss != nil {
			<-ss.slots
		}
		leave()
		return nil, fmt.Errorf("waiting for a free probe slot: %w", ctx.Err())
	}
	return func() {
		<-l.global
		if ss != nil {
			<-ss.slots
		}
		leave()
	}, nil
}
