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
	for _, u := range uris {
		if err := s.checkURI(ctx, u); err != nil {
			code := mcp.RESOURCE_NOT_FOUND
			if errors.Is(err, errURITooLong) {
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

var errURITooLong = errors.New("uri too long")

// checkURI says why uri names no resource of this server (nil when it does).
func (s *Server) checkURI(ctx context.Context, uri string) error {
	if len(uri) > maxURILength {
		return fmt.Errorf("%w: %d bytes, at most %d", errURITooLong, len(uri), maxURILength)
	}
	switch uri {
	case URIWatches, URIExpiring:
		return nil
	}
	id, ok := strings.CutPrefix(uri, uriWatchPrefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return fmt.Errorf("resource not found: %s (this server has %s, %s and %s)", probe.Clip(uri, 200), URIWatches, URIWatchTemplate, URIExpiring)
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
