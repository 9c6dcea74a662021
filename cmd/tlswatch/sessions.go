package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// sessionIDs is the registry of live streamable-HTTP sessions (2025-11-25
// era; 2026-07-28 has none). An ID is 128 random bits; it becomes live only
// when its initialize succeeded (confirm, from the after-initialize hook),
// so an initialize that failed leaves nothing behind, and it is valid until
// it is terminated: by DELETE, by the SDK's idle sweep, by eviction, or by
// the process ending. Every other ID, including one from before a restart,
// is unknown, so the client hears 404 on its next request of any method and
// starts a new session instead of waiting on a silent stream.
//
// Each live session has a context that ends when the session does; the
// long-lived requests of the session (GET streams) are bound to it.
// Terminated IDs leave no tombstone: memory follows the live sessions only.
type sessionIDs struct {
	now func() time.Time

	mu   sync.Mutex
	live map[string]*liveSession
}

type liveSession struct {
	ctx      context.Context
	end      context.CancelFunc
	lastSeen time.Time
	busy     int // requests in progress
}

func newSessionIDs(now func() time.Time) *sessionIDs {
	if now == nil {
		now = time.Now
	}
	return &sessionIDs{now: now, live: map[string]*liveSession{}}
}

// Generate mints an ID for an initialize in progress; it is not live yet.
func (m *sessionIDs) Generate() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "mcp-session-" + hex.EncodeToString(b[:])
}

var errUnknownSession = errors.New("unknown or expired session")

// Validate implements the SDK's SessionIdManager: only live IDs pass.
func (m *sessionIDs) Validate(id string) (isTerminated bool, err error) {
	if !m.isLive(id) {
		return false, errUnknownSession
	}
	return false, nil
}

// Terminate implements the SDK's SessionIdManager: the session ends, and
// with it its streams.
func (m *sessionIDs) Terminate(id string) (isNotAllowed bool, err error) {
	m.mu.Lock()
	s := m.live[id]
	delete(m.live, id)
	m.mu.Unlock()
	if s != nil {
		s.end()
	}
	return false, nil
}

// confirm makes id live: its initialize succeeded.
func (m *sessionIDs) confirm(id string) {
	ctx, end := context.WithCancel(context.Background())
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live[id]; ok {
		end()
		return
	}
	m.live[id] = &liveSession{ctx: ctx, end: end, lastSeen: m.now()}
}

func (m *sessionIDs) isLive(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.live[id]
	return ok
}

// enter records a request of session id; it returns the session's context
// and the func that ends the request, or ok false when id is not live.
func (m *sessionIDs) enter(id string) (ctx context.Context, leave func(), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.live[id]
	if s == nil {
		return nil, nil, false
	}
	s.busy++
	s.lastSeen = m.now()
	return s.ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		s.busy--
		s.lastSeen = m.now()
	}, true
}
