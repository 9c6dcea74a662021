package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// serveStream is the standalone GET stream of a live 2025-11-25-era
// session: a priming event (an ID, no data), then what its outbox holds, as
// SSE events whose IDs are the outbox's sequence numbers, and a ping
// request every heartbeat interval. It ends when the client goes, when the
// session ends (ctx) or when a newer GET of the session replaces it. A GET
// that a newer one replaced before it could start gets 409.
func (h *mcpEndpoint) serveStream(ctx context.Context, w http.ResponseWriter, r *http.Request, ob *outbox) {
	if v := r.Header.Get(mcp.HeaderProtocolVersion); v != "" && !mcp.IsValidProtocolVersion(v) {
		http.Error(w, "Bad Request: unsupported protocol version: "+v, http.StatusBadRequest)
		return
	}
	ctx, release, err := ob.attach(ctx)
	if errors.Is(err, errSuperseded) {
		http.Error(w, "Conflict: "+err.Error(), http.StatusConflict)
		return
	}
	if err != nil {
		return // the client or the session went while it waited
	}
	defer release()
	pos := ob.resume(r.Header.Get("Last-Event-ID"))
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	// The priming event: a client whose stream breaks before its first
	// event resumes from here, so what this stream took is not lost.
	if _, err := fmt.Fprintf(w, "id: %d\ndata: \n\n", pos-1); err != nil || rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(h.heartbeat)
	defer beat.Stop()
	for {
		if batch := ob.from(pos); len(batch) > 0 {
			if err := writeEvents(w, rc, batch); err != nil {
				h.logger.Debug("standalone stream ended", "session", ob.session, "err", err)
				return
			}
			pos = batch[len(batch)-1].seq + 1
			ob.written(pos - 1)
			continue
		}
		select {
		case <-ob.wake:
		case <-beat.C:
			if err := h.ping(w, rc); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// writeEvents writes the entries as SSE events and flushes them: only then
// are they written as far as the outbox is concerned.
func writeEvents(w io.Writer, rc *http.ResponseController, batch []outEntry) error {
	for _, e := range batch {
		if _, err := fmt.Fprintf(w, "id: %d\nevent: message\ndata: %s\n\n", e.seq, e.data); err != nil {
			return err
		}
	}
	return rc.Flush()
}

// ping is the heartbeat: a ping request (no event ID, so it is not part of
// what a resuming client asks for), which keeps proxies from closing an
// idle stream and tells the server when the client is gone.
func (h *mcpEndpoint) ping(w io.Writer, rc *http.ResponseController) error {
	if _, err := fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}\n\n", h.pings.Add(1)); err != nil {
		return err
	}
	return rc.Flush()
}
