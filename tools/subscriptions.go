package tools

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Subscriptions is the registry of who wants to hear about what, and the
// watch.Notifier that turns watcher events into MCP notifications.
//
// mcp-go v1.2.1 acknowledges resources/subscribe but keeps no record of it,
// so the registry does, through server hooks, for both protocol eras:
//
//   - 2025-11-25 and earlier: resources/subscribe and resources/unsubscribe
//     (after-hooks) record URIs per session ID; the session-unregistered hook
//     (stdio end, HTTP DELETE, idle-TTL sweep, eviction) drops them. Updates
//     and log alerts (only at or above the session's logging/setLevel) go
//     to the transport's SessionSink when it has one (HTTP: the session's
//     own queue behind its standalone stream), else through the SDK's
//     session channel (stdio, in-process).
//   - 2026-07-28: there are no sessions; a client opens a subscriptions/listen
//     request whose filter names the URIs, and the stream lives as long as
//     that request. The before-hook records the stream (its session, request
//     ID and URIs) and forgets it when the request's context ends. Updates
//     are written to that stream's session, tagged with the subscription ID
//     as the protocol requires. A listen stream never carries
//     notifications/message: the protocol forbids notification types the
//     client did not ask for, and logging is request-scoped in that revision.
//
// list_changed goes to every legacy session and to the listen streams whose
// filter asked for it. One Change (one probe: a rotation, a status change
// and a stage crossing at once) sends at most one resources/updated per URI
// to each recipient.
//
// All methods are safe for concurrent use and never block on a client: a
// full notification channel drops the message (mcp-go's own behaviour), a
// sink keeps its own bound.
type Subscriptions struct {
	srv     *server.MCPServer
	logger  *slog.Logger
	secrets *redact.Set // hidden in alert messages
	max     int         // subscriptions per session or listen stream
	sink    atomic.Pointer[sinkBox]

	mu       sync.Mutex
	sessions map[string]*sessionSubs // legacy sessions by ID, from registration
	streams  map[*listenStream]struct{}

	cancelWatch func()
}

type sessionSubs struct {
	session server.ClientSession
	uris    map[string]struct{}
	// modern marks a session (stdio) that a 2026-07-28 client speaks on:
	// it gets notifications only through its listen streams.
	modern bool
	// levelSet: the client sent logging/setLevel. Only such sessions get
	// alerts as notifications/message; the others read the feed.
	levelSet bool
}

// listenStream is one open subscriptions/listen request.
type listenStream struct {
	session     server.ClientSession
	id          any // JSON-RPC ID of the listen request: the subscription ID
	uris        map[string]struct{}
	listChanged bool // opted in to resources/list_changed
}

var _ watch.Notifier = (*Subscriptions)(nil)

// SessionSink takes the server-initiated notifications (list_changed,
// resources/updated, log alerts) of the 2025-11-25-era sessions of a
// transport that delivers them itself. The streamable HTTP transport has
// one: mcp-go's session channel is shared by the standalone stream and the
// session's POSTs, and a POST that takes a notification as it ends drops
// it. Notify must not block; it returns an error when sessionID is not a
// live session of the sink.
type SessionSink interface {
	Notify(sessionID string, n mcp.JSONRPCNotification) error
}

// sinkBox lets an interface value sit in an atomic.Pointer.
type sinkBox struct{ SessionSink }

// Route sends the notifications of every 2025-11-25-era session to sink
// from now on (nil: back to the SDK's session channels). A transport calls
// it before it serves.
func (s *Subscriptions) Route(sink SessionSink) {
	if sink == nil {
		s.sink.Store(nil)
		return
	}
	s.sink.Store(&sinkBox{sink})
}

// defaultMaxSubscriptions bounds what one client can make the registry
// hold: every subscribed URI names an existing resource (the transports
// refuse the others), but a fleet has many.
const defaultMaxSubscriptions = 1000

func newSubscriptions(logger *slog.Logger, max int) *Subscriptions {
	return &Subscriptions{
		logger:   logger,
		max:      max,
		sessions: map[string]*sessionSubs{},
		streams:  map[*listenStream]struct{}{},
	}
}

// full reports whether session id may not subscribe to uri: it holds the
// maximum number of subscriptions already, and uri is not one of them.
func (s *Subscriptions) full(id, uri string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return false
	}
	_, have := ss.uris[uri]
	return !have && len(ss.uris) >= s.max
}

// install registers the hooks that keep the registry.
func (s *Subscriptions) install(h *server.Hooks) {
	h.AddOnRegisterSession(func(_ context.Context, cs server.ClientSession) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.sessions[cs.SessionID()]; !ok {
			s.sessions[cs.SessionID()] = &sessionSubs{session: cs, uris: map[string]struct{}{}}
		}
	})
	h.AddAfterSetLevel(func(ctx context.Context, _ any, _ *mcp.SetLevelRequest, _ *mcp.EmptyResult) {
		cs := server.ClientSessionFromContext(ctx)
		if cs == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if ss := s.sessions[cs.SessionID()]; ss != nil {
			ss.levelSet = true
		}
	})
	h.AddOnUnregisterSession(func(_ context.Context, cs server.ClientSession) {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.sessions, cs.SessionID())
	})
	h.AddAfterSubscribe(func(ctx context.Context, _ any, msg *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		cs := server.ClientSessionFromContext(ctx)
		if cs == nil || msg == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// Only registered sessions: their unregistration (end of stdio,
		// HTTP DELETE, idle sweep) is what drops the subscriptions again.
		ss := s.sessions[cs.SessionID()]
		if ss == nil {
			s.logger.Debug("subscribe from an unregistered session ignored", "uri", msg.Params.URI)
			return
		}
		if len(ss.uris) >= s.max {
			s.logger.Warn("subscription limit reached; ignored", "session", cs.SessionID(), "limit", s.max)
			return
		}
		ss.uris[msg.Params.URI] = struct{}{}
	})
	h.AddAfterUnsubscribe(func(ctx context.Context, _ any, msg *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		cs := server.ClientSessionFromContext(ctx)
		if cs == nil || msg == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if ss := s.sessions[cs.SessionID()]; ss != nil {
			delete(ss.uris, msg.Params.URI)
		}
	})
	h.AddBeforeAny(func(ctx context.Context, _ any, _ mcp.MCPMethod, _ any) {
		info := server.RequestProtocolInfoFromContext(ctx)
		cs := server.ClientSessionFromContext(ctx)
		if info == nil || !info.Modern || cs == nil || cs.SessionID() == "" {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if ss := s.sessions[cs.SessionID()]; ss != nil {
			ss.modern = true
		}
	})
	h.AddBeforeSubscriptionsListen(s.addStream)
}

// addStream records a 2026-07-28 subscriptions/listen request (its session,
// request ID and URIs) for as long as the request lasts.
func (s *Subscriptions) addStream(ctx context.Context, id any, msg *mcp.SubscriptionsListenRequest) {
	cs := server.ClientSessionFromContext(ctx)
	if cs == nil || msg == nil || id == nil {
		return
	}
	ls := &listenStream{session: cs, id: id, uris: map[string]struct{}{},
		listChanged: msg.Params.Notifications.ResourcesListChanged}
	for _, u := range msg.Params.Notifications.ResourceSubscriptions {
		if len(ls.uris) == s.max {
			break
		}
		ls.uris[u] = struct{}{}
	}
	s.mu.Lock()
	s.streams[ls] = struct{}{}
	s.mu.Unlock()
	// The request's context ends when the listen request does (client
	// cancel, disconnect, server shutdown): forget the stream then.
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.streams, ls)
		s.mu.Unlock()
	}()
}

// close detaches from the watcher.
func (s *Subscriptions) close() {
	s.mu.Lock()
	cancel := s.cancelWatch
	s.cancelWatch = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Subscribers reports which URIs each legacy session and each listen stream
// is subscribed to (for tests and diagnostics).
func (s *Subscriptions) Subscribers() (sessions map[string][]string, streams int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sessions = map[string][]string{}
	for id, ss := range s.sessions {
		if len(ss.uris) > 0 {
			sessions[id] = slices.Sorted(maps.Keys(ss.uris))
		}
	}
	return sessions, len(s.streams)
}

// Changed implements watch.Notifier: one committed Change of one watch. A
// watch added or removed changes the list (list_changed); every change
// updates the watch's own resource, the list, the expiring view and (with
// events) the alert feed, each once; each event but the addition and the
// removal also goes out as a log alert to the 2025-11-25-era sessions that
// set a log level.
func (s *Subscriptions) Changed(c watch.Change) {
	defer s.recoverNotify("Changed")
	if c.ListChanged() {
		s.listChanged()
	}
	uris := []string{WatchURI(c.Watch.ID), URIWatches, URIExpiring}
	if len(c.Events) > 0 {
		uris = append(uris, URIAlerts) // each event is in the feed
	}
	s.NotifyUpdated(uris...)
	for _, ev := range c.Events {
		if ev.Kind != watch.EventWatchAdded && ev.Kind != watch.EventWatchRemoved {
			s.alert(c.Watch, ev)
		}
	}
}

// listChanged sends notifications/resources/list_changed to every legacy
// session and to the listen streams that opted in to it (2026-07-28 makes
// every notification opt-in; mcp-go's broadcast would also reach a stdio
// session whose modern client did not ask).
func (s *Subscriptions) listChanged() {
	if s.srv == nil {
		return
	}
	method := string(mcp.MethodNotificationResourcesListChanged)
	legacy, streams := s.recipients(func(ls *listenStream) bool { return ls.listChanged })
	n := notification(method, nil)
	for _, id := range legacy {
		s.deliver(id, n)
	}
	for _, ls := range streams {
		s.sendToStream(ls, method, nil)
	}
}

// recipients snapshots, under the lock, the legacy (2025-11-25) sessions,
// which take every broadcast, and the listen streams that want this one.
func (s *Subscriptions) recipients(wants func(*listenStream) bool) (legacy []string, streams []*listenStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.sessions {
		if !ss.modern {
			legacy = append(legacy, id)
		}
	}
	for ls := range s.streams {
		if wants(ls) {
			streams = append(streams, ls)
		}
	}
	return legacy, streams
}

// recoverNotify keeps a bug in notification delivery from taking down the
// watcher goroutine that called us.
func (s *Subscriptions) recoverNotify(what string) {
	if p := recover(); p != nil {
		s.logger.Error("notification delivery panicked", "in", what, "panic", p)
	}
}

// NotifyUpdated sends notifications/resources/updated for each URI to
// exactly the sessions and listen streams subscribed to it.
func (s *Subscriptions) NotifyUpdated(uris ...string) {
	if s.srv == nil {
		return
	}
	type delivery struct {
		sessionID string
		stream    *listenStream
		uri       string
	}
	var out []delivery
	s.mu.Lock()
	for id, ss := range s.sessions {
		if ss.modern {
			continue
		}
		for _, u := range uris {
			if _, ok := ss.uris[u]; ok {
				out = append(out, delivery{sessionID: id, uri: u})
			}
		}
	}
	for ls := range s.streams {
		for _, u := range uris {
			if _, ok := ls.uris[u]; ok {
				out = append(out, delivery{stream: ls, uri: u})
			}
		}
	}
	s.mu.Unlock()

	method := string(mcp.MethodNotificationResourceUpdated)
	for _, d := range out {
		params := map[string]any{"uri": d.uri}
		if d.stream != nil {
			s.sendToStream(d.stream, method, params)
			continue
		}
		s.deliver(d.sessionID, notification(method, params))
	}
}

// notification is a JSON-RPC notification of method with params.
func notification(method string, params map[string]any) mcp.JSONRPCNotification {
	return mcp.JSONRPCNotification{
		JSONRPC:      mcp.JSONRPC_VERSION,
		Notification: mcp.Notification{Method: method, Params: mcp.NotificationParams{AdditionalFields: params}},
	}
}

// deliver sends n to the legacy session id: through the transport's sink
// when it has one, else into the SDK's session channel (which drops it
// when full, or when the session has not finished initializing).
func (s *Subscriptions) deliver(id string, n mcp.JSONRPCNotification) {
	var err error
	if b := s.sink.Load(); b != nil {
		err = b.Notify(id, n)
	} else {
		err = s.srv.SendNotificationToSpecificClient(id, n.Method, n.Params.AdditionalFields)
	}
	if err != nil {
		s.logger.Debug("notification not delivered", "session", id, "method", n.Method, "err", err)
	}
}

// sendToStream writes a notification to a listen stream's session, tagged
// with the subscription ID. Never blocks. The request that serves the
// stream is the only reader of that session's channel for as long as the
// stream is open.
func (s *Subscriptions) sendToStream(ls *listenStream, method string, params map[string]any) {
	n := notification(method, params)
	n.Params.Meta = map[string]any{mcp.MetaKeySubscriptionID: ls.id}
	select {
	case ls.session.NotificationChannel() <- n:
	default:
		s.logger.Warn("listen stream full; notification dropped", "method", method)
	}
}

// alert sends an event of watch w as notifications/message at its level to
// every 2025-11-25-era session whose logging level admits it; never to a
// 2026-07-28 listen stream.
func (s *Subscriptions) alert(w watch.Watch, ev watch.Event) {
	if s.srv == nil {
		return
	}
	level := mcp.LoggingLevel(ev.Level)
	switch level {
	case mcp.LoggingLevelWarning, mcp.LoggingLevelCritical, mcp.LoggingLevelInfo, mcp.LoggingLevelError:
	default:
		level = mcp.LoggingLevelWarning
	}
	data := map[string]any{
		"event":   ev.Kind,
		"message": s.secrets.String(ev.Message),
		"watch":   w.ID,
		"target":  targetLabel(w.Target, w.ID),
		"state":   w.State,
		"uri":     WatchURI(w.ID),
	}
	if r := w.LastReport; r != nil {
		data["status"] = r.Status
		data["expiry_stage"] = r.ExpiryStage
	}
	if c := ev.Tools; c != nil {
		// Tool names come from the probed server: hidden like the message.
		hide := func(names []string) []string {
			out := make([]string, len(names))
			for i, n := range names {
				out[i] = s.secrets.String(n)
			}
			return out
		}
		data["tools_changed"] = probe.ToolsChange{Added: hide(c.Added), Removed: hide(c.Removed), Changed: hide(c.Changed)}
	}
	// The shape of mcp-go's own log notifications.
	n := notification(string(mcp.MethodNotificationMessage), map[string]any{"level": level, "logger": "tlswatch", "data": data})
	for _, id := range s.logListeners(level) {
		s.deliver(id, n)
	}
}

// logListeners are the legacy sessions that set a logging level admitting
// a message at level; a session that never sent logging/setLevel gets no
// log alerts (it reads them from the feed).
func (s *Subscriptions) logListeners(level mcp.LoggingLevel) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, ss := range s.sessions {
		sl, ok := ss.session.(server.SessionWithLogging)
		if !ss.modern && ss.levelSet && ok && level.ShouldSendTo(sl.GetLogLevel()) {
			ids = append(ids, id)
		}
	}
	return ids
}
