package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// mcpEndpoint is /mcp: mcp-go's streamable HTTP server behind the session
// lifecycle and the protocol edges it leaves open.
//
//   - 2025-11-25 era (sessions): GET and DELETE need a live Mcp-Session-Id
//     (none: 400; unknown, ended or from before a restart: 404), as does
//     every POST but initialize (mcp-go's own check, on the same registry);
//     an ID is live only once its initialize succeeded (sessionIDs).
//   - The standalone GET stream is served here, not by mcp-go: the
//     server-initiated notifications of a session (tools.SessionSink) go to
//     its outbox and from there to its one GET stream (a newer GET replaces
//     it; Last-Event-ID resumes), never through mcp-go's session channel,
//     whose POST readers drop what they take as their request ends. The
//     stream ends with its session. Request-scoped notifications (progress)
//     still travel on the request's own POST stream, as mcp-go sends them.
//   - A request the client cancelled (notifications/cancelled on its
//     session) gets no response: its POST ends as an empty event stream.
//   - 2026-07-28 era: a notification without _meta protocol version (the
//     official Go SDK sends notifications/cancelled so) is accepted with the
//     version of its Mcp-Protocol-Version header instead of refused with 400,
//     which that SDK treats as fatal. GET and DELETE are mcp-go's 405.
//   - resources/read, resources/subscribe and subscriptions/listen that name
//     a resource this server does not have get -32002 (refuse).
type mcpEndpoint struct {
	sdk       http.Handler // mcp-go's StreamableHTTPServer
	ids       *sessionIDs
	flights   *flights
	heartbeat time.Duration // between pings on a GET stream
	pings     atomic.Int64  // IDs of the pings
	// refuse is tools.Server.ResourceRequestError.
	refuse func(ctx context.Context, session, method string, params json.RawMessage) *mcp.JSONRPCErrorDetails
	logger *slog.Logger
}

// envelope is the part of a JSON-RPC message the endpoint looks at.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

func (e *envelope) isRequest() bool {
	return e.Method != "" && len(e.ID) > 0 && !bytes.Equal(e.ID, []byte("null"))
}

func (e *envelope) isNotification() bool { return e.Method != "" && len(e.ID) == 0 }

// metaVersion is params._meta's protocol version ("" when absent).
func (e *envelope) metaVersion() string {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(e.Params, &p) != nil {
		return ""
	}
	var v string
	_ = json.Unmarshal(p.Meta[mcp.MetaKeyProtocolVersion], &v)
	return v
}

func (h *mcpEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		h.servePost(w, r)
	case http.MethodGet, http.MethodDelete:
		h.serveSessionMethod(w, r)
	case http.MethodHead, http.MethodOptions:
		h.sdk.ServeHTTP(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
	}
}

// serveSessionMethod: GET (the standalone stream) and DELETE act on a live
// session only. A 2026-07-28 client (by its header) gets mcp-go's 405.
func (h *mcpEndpoint) serveSessionMethod(w http.ResponseWriter, r *http.Request) {
	if mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion)) {
		h.sdk.ServeHTTP(w, r)
		return
	}
	id, sctx, leave, ok := h.enterSession(w, r)
	if !ok {
		return
	}
	defer leave()
	if r.Method == http.MethodDelete {
		h.sdk.ServeHTTP(w, r)
		return
	}
	ob := h.ids.outbox(id)
	if ob == nil {
		http.Error(w, "Not Found: unknown or expired session; initialize a new one", http.StatusNotFound)
		return
	}
	// The stream ends with the session (DELETE, idle sweep, eviction).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(sctx, cancel)()
	h.serveStream(ctx, w, r, ob)
}

// Notify implements tools.SessionSink: n goes to the outbox of session id.
func (h *mcpEndpoint) Notify(id string, n mcp.JSONRPCNotification) error {
	ob := h.ids.outbox(id)
	if ob == nil {
		return errUnknownSession
	}
	return ob.push(n)
}

func (h *mcpEndpoint) servePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// Too large (the guard's cap) or the client went away.
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var env envelope
	if len(bytes.TrimSpace(body)) == 0 || body[0] == '[' || json.Unmarshal(body, &env) != nil {
		h.sdk.ServeHTTP(w, r) // mcp-go answers what it cannot parse
		return
	}
	header := r.Header.Get(mcp.HeaderProtocolVersion)
	meta := env.metaVersion()
	if mcp.IsModernProtocol(header) || mcp.IsModernProtocol(meta) {
		h.serveModern(w, r, &env, body, header, meta)
		return
	}
	h.serveLegacy(w, r, &env)
}

// serveModern serves a 2026-07-28 message (no session).
func (h *mcpEndpoint) serveModern(w http.ResponseWriter, r *http.Request, env *envelope, body []byte, header, meta string) {
	if env.isNotification() && meta == "" && mcp.IsModernProtocol(header) {
		if b, err := withMetaVersion(body, header); err == nil {
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
		}
	}
	if env.isRequest() && h.refused(w, r, env, true) {
		return
	}
	h.sdk.ServeHTTP(w, r)
}

// serveLegacy serves a message of a 2025-11-25-era session.
func (h *mcpEndpoint) serveLegacy(w http.ResponseWriter, r *http.Request, env *envelope) {
	if env.Method == string(mcp.MethodInitialize) {
		h.serveInitialize(w, r)
		return
	}
	id, _, leave, ok := h.enterSession(w, r)
	if !ok {
		return
	}
	defer leave()
	switch {
	case env.Method == string(mcp.MethodNotificationCancelled):
		h.flights.cancel(id, env.Params)
	case env.isRequest():
		if h.refused(w, r, env, false) {
			return
		}
		f, done := h.flights.start(id, env.ID)
		defer done()
		w = &cancelWriter{ResponseWriter: w, f: f}
	}
	h.sdk.ServeHTTP(w, r)
}

// enterSession finds the live session of a request that needs one; it
// answers 400 (no Mcp-Session-Id) or 404 (not live) itself and returns
// false. leave ends the request's stay in the session.
func (h *mcpEndpoint) enterSession(w http.ResponseWriter, r *http.Request) (id string, sctx context.Context, leave func(), ok bool) {
	id = r.Header.Get(server.HeaderKeySessionID)
	if id == "" {
		http.Error(w, "Bad Request: Mcp-Session-Id header required (initialize first)", http.StatusBadRequest)
		return "", nil, nil, false
	}
	if sctx, leave, ok = h.ids.enter(id); !ok {
		http.Error(w, "Not Found: unknown or expired session; initialize a new one", http.StatusNotFound)
	}
	return id, sctx, leave, ok
}

// serveInitialize lets mcp-go mint and register the session, then undoes
// both when the initialize failed: the ID never became live, so the client
// must not get it, and mcp-go's registration of it goes.
func (h *mcpEndpoint) serveInitialize(w http.ResponseWriter, r *http.Request) {
	iw := &initWriter{ResponseWriter: w, ids: h.ids}
	h.sdk.ServeHTTP(iw, r)
	if iw.failed != "" {
		h.end(iw.failed)
	}
}

// end terminates session id in mcp-go (and in the registry) as a DELETE
// would: its registration, subscriptions and per-session state go.
func (h *mcpEndpoint) end(id string) {
	req, err := http.NewRequest(http.MethodDelete, "http://localhost"+endpointPath, nil)
	if err != nil {
		return
	}
	req.Header.Set(server.HeaderKeySessionID, id)
	h.sdk.ServeHTTP(discardWriter{header: http.Header{}}, req)
	_, _ = h.ids.Terminate(id)
}

// refused answers a resource request that names no resource of this server
// (true), or leaves it to mcp-go (false).
func (h *mcpEndpoint) refused(w http.ResponseWriter, r *http.Request, env *envelope, modern bool) bool {
	if h.refuse == nil {
		return false
	}
	e := h.refuse(r.Context(), r.Header.Get(server.HeaderKeySessionID), env.Method, env.Params)
	if e == nil {
		return false
	}
	var id any
	_ = json.Unmarshal(env.ID, &id)
	writeJSONRPC(w, mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(id), Error: *e}, modern)
	return true
}

// writeJSONRPC writes one JSON-RPC message as an application/json response.
// 2026-07-28 maps invalid params to 400; everything else here is 200.
func writeJSONRPC(w http.ResponseWriter, msg mcp.JSONRPCError, modern bool) {
	status := http.StatusOK
	if modern && msg.Error.Code == mcp.INVALID_PARAMS {
		status = http.StatusBadRequest
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(msg)
}

// withMetaVersion returns the message body with params._meta's protocol
// version set to version.
func withMetaVersion(body []byte, version string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, err
	}
	params := map[string]json.RawMessage{}
	if p := top["params"]; len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		if err := json.Unmarshal(p, &params); err != nil {
			return nil, err
		}
	}
	meta := map[string]any{}
	if m := params["_meta"]; len(m) > 0 && !bytes.Equal(m, []byte("null")) {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, err
		}
	}
	meta[mcp.MetaKeyProtocolVersion] = version
	var err error
	if params["_meta"], err = json.Marshal(meta); err != nil {
		return nil, err
	}
	if top["params"], err = json.Marshal(params); err != nil {
		return nil, err
	}
	return json.Marshal(top)
}

// initWriter withholds the session ID of an initialize that did not make
// it live, and remembers it for cleanup.
type initWriter struct {
	http.ResponseWriter
	ids    *sessionIDs
	once   sync.Once
	failed string
}

// check runs before the headers go out: by then the after-initialize hook
// has made the ID live, or the initialize failed.
func (w *initWriter) check() {
	w.once.Do(func() {
		if id := w.Header().Get(server.HeaderKeySessionID); id != "" && !w.ids.isLive(id) {
			w.Header().Del(server.HeaderKeySessionID)
			w.failed = id
		}
	})
}

func (w *initWriter) WriteHeader(code int) {
	w.check()
	w.ResponseWriter.WriteHeader(code)
}

func (w *initWriter) Write(p []byte) (int, error) {
	w.check()
	return w.ResponseWriter.Write(p)
}

func (w *initWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *initWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// discardWriter is the response writer of the endpoint's own requests.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
