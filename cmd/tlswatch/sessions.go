package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
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
// long-lived requests of the session (GET streams) are bound to it. It
// also has the outbox of its server-initiated notifications, which goes
// with it. Terminated IDs leave no tombstone: memory follows the live
// sessions only.
//
// At most max sessions are live: confirming one more evicts the session
// idle longest (one with no request in progress when there is one). A
// session with no request in progress (an open GET stream is one) for the
// idle TTL ends too (sweep). Such a session ends at once (404 from then
// on); evict, when set, is told its ID to release what the SDK keeps for
// it.
type sessionIDs struct {
	now    func() time.Time
	max    int
	evict  func(id string)
	logger *slog.Logger // of the outboxes

	mu   sync.Mutex
	live map[string]*liveSession
}

type liveSession struct {
	ctx      context.Context
	end      context.CancelFunc
	out      *outbox
	lastSeen time.Time
	busy     int // requests in progress
}

func newSessionIDs(now func() time.Time, max int) *sessionIDs {
	if now == nil {
		now = time.Now
	}
	return &sessionIDs{now: now, max: max, live: map[string]*liveSession{}}
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

// confirm makes id live: its initialize succeeded. It makes room first
// when max sessions are live.
func (m *sessionIDs) confirm(id string) {
	ctx, end := context.WithCancel(context.Background())
	m.mu.Lock()
	if _, ok := m.live[id]; ok {
		m.mu.Unlock()
		end()
		return
	}
	var evicted []string
	for m.max > 0 && len(m.live) >= m.max {
		victim := m.idlest()
		m.live[victim].end()
		delete(m.live, victim)
		evicted = append(evicted, victim)
	}
	m.live[id] = &liveSession{ctx: ctx, end: end, out: newOutbox(id, streamBacklog, m.logger), lastSeen: m.now()}
	m.mu.Unlock()
	m.release(evicted)
}

// release tells evict the sessions ended here.
func (m *sessionIDs) release(ended []string) {
	if m.evict != nil {
		for _, v := range ended {
			m.evict(v)
		}
	}
}

// sweep ends the sessions with no request in progress for ttl.
func (m *sessionIDs) sweep(ttl time.Duration) {
	m.mu.Lock()
	var ended []string
	for id, s := range m.live {
		if s.busy == 0 && m.now().Sub(s.lastSeen) >= ttl {
			s.end()
			delete(m.live, id)
			ended = append(ended, id)
		}
	}
	m.mu.Unlock()
	m.release(ended)
}

// expireIdle sweeps every ttl/2 (at least every second) until ctx ends.
func (m *sessionIDs) expireIdle(ctx context.Context, ttl time.Duration) {
	t := time.NewTicker(max(ttl/2, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sweep(ttl)
		}
	}
}

// outbox is the outbox of live session id (nil when it is not live).
func (m *sessionIDs) outbox(id string) *outbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.live[id]; s != nil {
		return s.out
	}
	return nil
}

// idlest is the live session to evict: the least recently used of those
// with no request in progress, else of all. Caller holds m.mu; there is at
// least one live session.
func (m *sessionIDs) idlest() string {
	var best string
	var bestS *liveSession
	for id, s := range m.live {
		switch {
		case bestS == nil,
			(s.busy == 0) != (bestS.busy == 0) && s.busy == 0,
			(s.busy == 0) == (bestS.busy == 0) && s.lastSeen.Before(bestS.lastSeen):
			best, bestS = id, s
		}
	}
	return best
}

// count is the number of live sessions.
func (m *sessionIDs) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
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
