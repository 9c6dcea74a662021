package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
)

// streamBacklog is how many notifications one session's outbox holds: those
// no stream has written yet, and behind them the newest ones written, kept
// for a client that resumes with Last-Event-ID.
const streamBacklog = 256

// outbox holds the server-initiated notifications (list_changed,
// resources/updated, log alerts) of one 2025-11-25-era HTTP session on
// their way to its standalone GET stream. It exists because mcp-go's
// session channel has two readers while a POST is in flight, the standalone
// stream and the POST, and the POST drops what it takes as it ends: a
// notification emitted as a watch_endpoint call returns was lost. Here a
// notification leaves the queue only once a stream has written and flushed
// it, so none is lost while the client holds a stream; one emitted while it
// has none waits for the next.
//
// Each notification gets a sequence number, sent as its SSE event ID; a
// stream opens with a priming event whose ID is where it starts. A client
// that reconnects with Last-Event-ID gets everything after that event that
// is still held (what a dropped connection may have swallowed); without one
// it gets what no stream has written yet. The outbox is bounded: past
// streamBacklog the oldest goes (one log line per run of drops). A
// resources/updated for a URI, or a list_changed, that is already waiting
// is not queued twice: both only tell the client to read again.
//
// One stream writes at a time: a second GET of the session replaces the
// first (attach), so a client that reconnects before the server noticed
// its old connection died is served at once.
type outbox struct {
	session string
	max     int
	logger  *slog.Logger
	wake    chan struct{} // capacity 1: something was queued

	mu      sync.Mutex
	entries []outEntry // consecutive sequence numbers, oldest first
	seq     uint64     // the last sequence number given
	next    uint64     // the first one no stream has written
	taken   uint64     // the first one no stream has taken to write
	dropped int        // dropped since a stream last wrote one
	turn    *streamTurn
	latest  uint64 // the newest attach
}

type outEntry struct {
	seq  uint64
	key  string // what makes a waiting entry redundant; "" never is
	data []byte // the JSON-RPC message
}

// streamTurn is the one stream writing an outbox.
type streamTurn struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newOutbox(session string, max int, logger *slog.Logger) *outbox {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &outbox{session: session, max: max, logger: logger, wake: make(chan struct{}, 1), next: 1, taken: 1}
}

// push queues n. It never blocks.
func (o *outbox) push(n mcp.JSONRPCNotification) error {
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode %s: %w", n.Method, err)
	}
	key := coalesceKey(n)
	o.mu.Lock()
	if key != "" && o.waiting(key) {
		o.mu.Unlock()
		return nil
	}
	o.seq++
	o.entries = append(o.entries, outEntry{seq: o.seq, key: key, data: data})
	firstDrop := false
	if len(o.entries) > o.max {
		if oldest := o.entries[0]; oldest.seq >= o.next {
			o.next = oldest.seq + 1
			o.dropped++
			firstDrop = o.dropped == 1
		}
		o.entries = slices.Delete(o.entries, 0, 1)
	}
	o.mu.Unlock()
	if firstDrop {
		o.logger.Warn("session outbox full: dropping its oldest notifications until a stream takes them (the client can catch up from tlswatch://alerts)",
			"session", o.session, "held", o.max)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// coalesceKey names what n tells the client, when a second copy waiting
// behind the first would tell it nothing more.
func coalesceKey(n mcp.JSONRPCNotification) string {
	switch n.Method {
	case string(mcp.MethodNotificationResourcesListChanged):
		return n.Method
	case string(mcp.MethodNotificationResourceUpdated):
		if uri, ok := n.Params.AdditionalFields["uri"].(string); ok {
			return n.Method + " " + uri
		}
	}
	return ""
}

// waiting reports whether an entry no stream has taken yet has key: it
// will reach the client after this moment. (One being written may already
// have been read.) Caller holds o.mu.
func (o *outbox) waiting(key string) bool {
	for i := len(o.entries) - 1; i >= 0 && o.entries[i].seq >= o.taken; i-- {
		if o.entries[i].key == key {
			return true
		}
	}
	return false
}

// resume is the sequence number a new stream starts at: right after the
// event the client last saw (Last-Event-ID, when it is one this outbox
// wrote, or the priming ID of a stream, which may be 0), else the first
// one no stream has written.
func (o *outbox) resume(lastEventID string) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n, err := strconv.ParseUint(lastEventID, 10, 64); err == nil && n < o.next {
		return n + 1
	}
	return o.next
}

// from takes the entries from sequence number pos on (from the oldest
// held, when those before it are gone) for a stream to write.
func (o *outbox) from(pos uint64) []outEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.entries) == 0 {
		return nil
	}
	i := 0
	if first := o.entries[0].seq; pos > first {
		i = int(min(pos-first, uint64(len(o.entries))))
	}
	batch := slices.Clone(o.entries[i:])
	if n := len(batch); n > 0 {
		o.taken = max(o.taken, batch[n-1].seq+1)
	}
	return batch
}

// written records that a stream wrote and flushed everything up to seq.
func (o *outbox) written(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq >= o.next {
		o.next = seq + 1
	}
	o.dropped = 0
}

var errSuperseded = errors.New("a newer stream of this session replaced this one")

// attach makes the caller the stream of the outbox: the stream open now,
// if any, is ended first, and the caller waits until it has stopped
// writing. When several wait, the newest wins and the others get
// errSuperseded. The returned context ends when a newer stream replaces
// this one; release ends the turn.
func (o *outbox) attach(ctx context.Context) (context.Context, func(), error) {
	o.mu.Lock()
	o.latest++
	gen := o.latest
	for o.turn != nil {
		t := o.turn
		t.cancel()
		o.mu.Unlock()
		select {
		case <-t.done:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		o.mu.Lock()
		if o.latest != gen {
			o.mu.Unlock()
			return nil, nil, errSuperseded
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	t := &streamTurn{cancel: cancel, done: make(chan struct{})}
	o.turn = t
	o.mu.Unlock()
	return sctx, func() {
		cancel()
		o.mu.Lock()
		if o.turn == t {
			o.turn = nil
		}
		o.mu.Unlock()
		close(t.done)
	}, nil
}
