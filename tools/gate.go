package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Requests that name a resource are checked before they reach the SDK:
// mcp-go answers a resource handler's error as -32603 (internal error), and
// accepts subscriptions to anything, so a client could neither tell a typo
// from an outage nor learn that the watch it subscribes to was removed.
// The transports (cmd/tlswatch) call ResourceRequestError for
// resources/read, resources/subscribe and subscriptions/listen and answer
// its error themselves.

// maxURILength bounds a resource URI a client may send: a watch URI is
// about 40 bytes, and the registry keeps what clients subscribe to.
const maxURILength = 1024

// ResourceRequestError returns the JSON-RPC error a resources/read,
// resources/subscribe or subscriptions/listen request of session (its ID;
// "" for a 2026-07-28 request) must be answered with instead of being
// served, or nil to serve it. Other methods pass (nil). Unknown resources
// get -32002 (resource not found) in both protocol eras; a URI over
// maxURILength and a subscription over the session's limit get -32602;
// malformed parameters are left to the SDK, which names them.
func (s *Server) ResourceRequestError(ctx context.Context, session, method string, params json.RawMessage) *mcp.JSONRPCErrorDetails {
	var uris []string
	switch mcp.MCPMethod(method) {
	case mcp.MethodResourcesRead, mcp.MethodResourcesSubscribe:
		var p struct {
			URI string `json:"uri"`
		}
		if json.Unmarshal(params, &p) != nil || p.URI == "" {
			return nil
		}
		uris = []string{p.URI}
	case mcp.MethodSubscriptionsListen:
		var p struct {
			Notifications struct {
				ResourceSubscriptions []string `json:"resourceSubscriptions"`
			} `json:"notifications"`
		}
		if json.Unmarshal(params, &p) != nil {
			return nil
		}
		uris = p.Notifications.ResourceSubscriptions
		if len(uris) > s.Subs.max {
			e := mcp.NewJSONRPCErrorDetails(mcp.INVALID_PARAMS,
				fmt.Sprintf("notifications.resourceSubscriptions: %d URIs; at most %d per stream", len(uris), s.Subs.max), nil)
			return &e
		}
	default:
		return nil
	}
	subscribing := mcp.MCPMethod(method) != mcp.MethodResourcesRead
	for _, u := range uris {
		if err := s.checkURI(ctx, u, subscribing); err != nil {
			code := mcp.RESOURCE_NOT_FOUND
			if errors.Is(err, errBadURI) {
				code = mcp.INVALID_PARAMS
			}
			e := mcp.NewJSONRPCErrorDetails(code, err.Error(), map[string]any{"uri": probe.Clip(u, 200)})
			return &e
		}
	}
	if mcp.MCPMethod(method) == mcp.MethodResourcesSubscribe && s.Subs.full(session, uris[0]) {
		e := mcp.NewJSONRPCErrorDetails(mcp.INVALID_PARAMS,
			fmt.Sprintf("uri: this session holds %d subscriptions, the most it may; unsubscribe from one first", s.Subs.max), nil)
		return &e
	}
	return nil
}

// errBadURI marks a URI refused as invalid (-32602) rather than unknown.
var errBadURI = errors.New("uri")

// checkURI says why uri names no resource of this server (nil when it
// does); subscribing to the feed takes its plain URI only.
func (s *Server) checkURI(ctx context.Context, uri string, subscribing bool) error {
	if len(uri) > maxURILength {
		return fmt.Errorf("%w too long: %d bytes, at most %d", errBadURI, len(uri), maxURILength)
	}
	switch {
	case uri == URIWatches, uri == URIExpiring, uri == URIAlerts:
		return nil
	case isAlertsURI(uri) && subscribing:
		return fmt.Errorf("%w: subscribe to %s itself; read %s?after=ID to catch up", errBadURI, URIAlerts, URIAlerts)
	case isAlertsURI(uri):
		return s.checkAlertsQuery(ctx, uri)
	}
	id, ok := strings.CutPrefix(uri, uriWatchPrefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return fmt.Errorf("resource not found: %s (this server has %s, %s, %s and %s)", probe.Clip(uri, 200), URIWatches, URIWatchTemplate, URIExpiring, URIAlerts)
	}
	svc, err := s.deps.watchService()
	if err != nil {
		return fmt.Errorf("resource not found: %w", err)
	}
	if _, err := svc.Get(ctx, id); errors.Is(err, watch.ErrNotFound) {
		return fmt.Errorf("resource not found: no watch %q (see list_watches)", probe.Clip(id, 100))
	}
	return nil // other errors: the handler reports them
}

// checkAlertsQuery refuses a feed URI whose query, or cursor, the feed
// cannot take (the watcher owns what a cursor is).
func (s *Server) checkAlertsQuery(ctx context.Context, uri string) error {
	after, _, err := alertsQuery(uri)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadURI, err)
	}
	svc, err := s.deps.watchService()
	if err != nil {
		return fmt.Errorf("resource not found: %w", err)
	}
	var fe *probe.FieldError
	if _, err := svc.Alerts(ctx, after, 1); errors.As(err, &fe) {
		return fmt.Errorf("%w: %v", errBadURI, fe)
	}
	return nil
}
