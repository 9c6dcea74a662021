package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/watch"
)

// Resource URIs (DESIGN.md).
const (
	URIWatches       = "tlswatch://watches"
	URIWatchTemplate = "tlswatch://watches/{id}"
	URIExpiring      = "tlswatch://expiring"
	uriWatchPrefix   = "tlswatch://watches/"
)

// WatchURI is the resource URI of one watch.
func WatchURI(id string) string { return uriWatchPrefix + id }

// maxLinks bounds the resource links of one listing: a client follows a
// few, and a fleet of 100,000 watches must not become as many content
// items.
const maxLinks = 50

// watchLinks are resource_link content items to the watches' resources
// (the first maxLinks).
func watchLinks(ws []watch.Watch) []mcp.Content {
	out := make([]mcp.Content, 0, min(len(ws), maxLinks))
	for _, w := range ws[:min(len(ws), maxLinks)] {
		out = append(out, mcp.NewResourceLink(WatchURI(w.ID), "watch "+w.ID,
			"Watch of "+targetLabel(w.Target, w.ID)+": config, state and latest Report; subscribe for changes.", mimeJSON))
	}
	return out
}

const mimeJSON = "application/json"

func jsonContents(uri string, v any) ([]mcp.ResourceContents, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", uri, err)
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: mimeJSON, Text: string(b)}}, nil
}

func watchesResource(d Deps) Resource {
	def := mcp.NewResource(URIWatches, "watches",
		mcp.WithResourceTitle("All watches"),
		mcp.WithResourceDescription("Every watch with its state and latest Report, as list_watches returns it. Subscribe to be told when any watch changes state, crosses an expiry stage or rotates its certificate."),
		mcp.WithMIMEType(mimeJSON),
	)
	return Resource{Def: def, Handler: func(ctx context.Context, _ mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		out, err := d.listWatches(ctx)
		if err != nil {
			return nil, err
		}
		return jsonContents(URIWatches, out)
	}}
}

func expiringResource(d Deps) Resource {
	def := mcp.NewResource(URIExpiring, "expiring",
		mcp.WithResourceTitle("Expiring, expired or down"),
		mcp.WithResourceDescription("Watches whose certificate expires within 30 days, is expired, or that are down; soonest first (list_expiring with within_days 30). Subscribe to be told when it changes."),
		mcp.WithMIMEType(mimeJSON),
	)
	return Resource{Def: def, Handler: func(ctx context.Context, _ mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		out, err := d.listExpiring(ctx, nil)
		if err != nil {
			return nil, err
		}
		return jsonContents(URIExpiring, out)
	}}
}

func watchResourceTemplate(d Deps) ResourceTemplate {
	def := mcp.NewResourceTemplate(URIWatchTemplate, "watch",
		mcp.WithTemplateTitle("One watch"),
		mcp.WithTemplateDescription("One watch: its configuration, state and latest Report. Subscribe to be told when it goes down or up, crosses an expiry stage or its certificate rotates."),
		mcp.WithTemplateMIMEType(mimeJSON),
	)
	return ResourceTemplate{Def: def, Handler: func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		uri := req.Params.URI
		id := strings.TrimPrefix(uri, uriWatchPrefix)
		if id == "" || strings.Contains(id, "/") {
			return nil, fmt.Errorf("%s: not a watch URI (want %s)", uri, URIWatchTemplate)
		}
		svc, err := d.watchService()
		if err != nil {
			return nil, err
		}
		w, err := svc.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", uri, err)
		}
		normalizeWatch(&w)
		return jsonContents(uri, w)
	}}
}
