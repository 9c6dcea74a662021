package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
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
	// The pages after the first: tlswatch://watches?cursor=NEXT&limit=N.
	URIWatchesPages  = "tlswatch://watches{?cursor,limit}"
	URIExpiringPages = "tlswatch://expiring{?cursor,limit}"
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
		mcp.WithResourceDescription("The watches with their state and latest Report, as list_watches returns them: the first page (100); when next_cursor is present, "+
			"read tlswatch://watches?cursor=NEXT for the next. Subscribe to be told when any watch changes state, crosses an expiry stage or rotates its certificate."),
		mcp.WithMIMEType(mimeJSON),
	)
	return Resource{Def: def, Handler: func(ctx context.Context, _ mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		out, err := d.listWatches(ctx, PageArgs{})
		if err != nil {
			return nil, err
		}
		return jsonContents(URIWatches, out)
	}}
}

func expiringResource(d Deps) Resource {
	def := mcp.NewResource(URIExpiring, "expiring",
		mcp.WithResourceTitle("Expiring, expired or down"),
		mcp.WithResourceDescription("Watches whose certificate expires within 30 days, is expired, or that are down; soonest first (list_expiring with within_days 30), "+
			"the first page; read tlswatch://expiring?cursor=NEXT for the next. Subscribe to be told when it changes."),
		mcp.WithMIMEType(mimeJSON),
	)
	return Resource{Def: def, Handler: func(ctx context.Context, _ mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		out, err := d.listExpiring(ctx, nil, PageArgs{})
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

// pagesTemplates are the pages of tlswatch://watches and
// tlswatch://expiring after the first: the list's URI with the cursor (and
// page size) of list_watches and list_expiring as query parameters.
func pagesTemplates(d Deps) []ResourceTemplate {
	watches := mcp.NewResourceTemplate(URIWatchesPages, "watches-page",
		mcp.WithTemplateTitle("A page of the watches"),
		mcp.WithTemplateDescription("A page of tlswatch://watches: cursor is the next_cursor of the page before, limit the page size (1 to 1000, default 100)."),
		mcp.WithTemplateMIMEType(mimeJSON),
	)
	expiring := mcp.NewResourceTemplate(URIExpiringPages, "expiring-page",
		mcp.WithTemplateTitle("A page of the expiring view"),
		mcp.WithTemplateDescription("A page of tlswatch://expiring: cursor is the next_cursor of the page before, limit the page size (1 to 1000, default 100)."),
		mcp.WithTemplateMIMEType(mimeJSON),
	)
	return []ResourceTemplate{
		{Def: watches, Handler: func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			p, err := pageOf(req.Params.URI, URIWatches)
			if err != nil {
				return nil, err
			}
			out, err := d.listWatches(ctx, p)
			if err != nil {
				return nil, err
			}
			return jsonContents(req.Params.URI, out)
		}},
		{Def: expiring, Handler: func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			p, err := pageOf(req.Params.URI, URIExpiring)
			if err != nil {
				return nil, err
			}
			out, err := d.listExpiring(ctx, nil, p)
			if err != nil {
				return nil, err
			}
			return jsonContents(req.Params.URI, out)
		}},
	}
}

// pageOf reads the page arguments from the query of a list resource's URI;
// errors name the parameter.
func pageOf(uri, base string) (PageArgs, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme+"://"+u.Host+u.Path != base {
		return PageArgs{}, fmt.Errorf("%s: not a page of %s (want %s?cursor=NEXT)", uri, base, base)
	}
	q := u.Query()
	for k, vs := range q {
		switch {
		case k != "cursor" && k != "limit":
			return PageArgs{}, fieldErr("query", "unknown parameter %.40q of %s (accepted: cursor, limit)", k, base)
		case len(vs) > 1:
			return PageArgs{}, fieldErr(k, "given %d times", len(vs))
		}
	}
	p := PageArgs{Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return PageArgs{}, fieldErr("limit", "%q is not a whole number", l)
		}
		p.Limit = n
	}
	return p, nil
}
