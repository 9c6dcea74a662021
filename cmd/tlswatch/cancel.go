package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
)

// flights are the requests in progress on the 2025-11-25-era HTTP sessions,
// so that one the client cancels (notifications/cancelled, another POST of
// the same session) is not answered: the protocol says a cancelled request
// gets no response, and clients log the ones that arrive anyway ("unknown
// message ID"). mcp-go cancels the handler's context; the response the
// handler then returns is what flights suppress.
type flights struct {
	mu sync.Mutex
	m  map[flightKey]*flight
}

type flightKey struct{ session, id string }

type flight struct {
	mu        sync.Mutex
	cancelled bool
}

func newFlights() *flights { return &flights{m: map[flightKey]*flight{}} }

// start records request id of session; done forgets it.
func (fs *flights) start(session string, id json.RawMessage) (f *flight, done func()) {
	k := flightKey{session, canonicalID(id)}
	f = &flight{}
	fs.mu.Lock()
	fs.m[k] = f
	fs.mu.Unlock()
	return f, func() {
		fs.mu.Lock()
		if fs.m[k] == f {
			delete(fs.m, k)
		}
		fs.mu.Unlock()
	}
}

// cancel marks the request named by a notifications/cancelled params.
func (fs *flights) cancel(session string, params json.RawMessage) {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil || len(p.RequestID) == 0 {
		return
	}
	fs.mu.Lock()
	f := fs.m[flightKey{session, canonicalID(p.RequestID)}]
	fs.mu.Unlock()
	if f != nil {
		f.mu.Lock()
		f.cancelled = true
		f.mu.Unlock()
	}
}

// canonicalID is a JSON-RPC ID as compact JSON: 7 and "7" stay distinct.
func canonicalID(id json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, id) != nil {
		return string(id)
	}
	return b.String()
}

// cancelWriter passes a request's response through until the request is
// cancelled; from then on it writes nothing more. A response not begun by
// then becomes an empty event stream, which ends the POST without a
// JSON-RPC response (the transport requires a request's POST to answer JSON
// or an event stream).
type cancelWriter struct {
	http.ResponseWriter
	f *flight

	started, dropping bool // under f.mu
}

func (w *cancelWriter) WriteHeader(code int) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *cancelWriter) writeHeaderLocked(code int) {
	if w.started {
		return
	}
	w.started = true
	if w.f.cancelled {
		w.dropping = true
		h := w.Header()
		h.Del("Content-Length")
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		code = http.StatusOK
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	w.writeHeaderLocked(http.StatusOK)
	if w.dropping || w.f.cancelled {
		w.dropping = true
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *cancelWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *cancelWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
