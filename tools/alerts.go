package tools

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// The alert feed (tlswatch://alerts): every event the watcher committed
// (stage crossed, down, up, rotated, watch added or removed), each with a
// cursor, kept durably by package watch. Subscribing to tlswatch://alerts
// is how a client of either protocol era hears of alerts (an update per
// committed change); reading tlswatch://alerts?after=CURSOR is how a
// client that was away catches up.
const (
	URIAlerts         = "tlswatch://alerts"
	URIAlertsTemplate = "tlswatch://alerts{?after,limit}"
)

func alertsResource(d Deps) Resource {
	def := mcp.NewResource(URIAlerts, "alerts",
		mcp.WithResourceTitle("Alert feed"),
		mcp.WithResourceDescription("Every event the watcher raised (stage crossed, down, up, rotated, watch added or removed), oldest first, each with an id. "+
			"Subscribe to be told when one is added; read tlswatch://alerts?after=ID to continue after the last one you saw (next is the cursor of the page)."),
		mcp.WithMIMEType(mimeJSON),
	)
	return Resource{Def: def, Handler: func(ctx context.Context, _ mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return d.readAlerts(ctx, URIAlerts)
	}}
}

func alertsResourceTemplate(d Deps) ResourceTemplate {
	def := mcp.NewResourceTemplate(URIAlertsTemplate, "alerts-after",
		mcp.WithTemplateTitle("Alert feed after a cursor"),
		mcp.WithTemplateDescription(fmt.Sprintf("The alert feed after the entry with id after (its next cursor), at most limit entries (default %d, at most %d); missed counts entries no longer kept.",
			watch.DefaultAlertsLimit, watch.MaxAlertsLimit)),
		mcp.WithTemplateMIMEType(mimeJSON),
	)
	return ResourceTemplate{Def: def, Handler: func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return d.readAlerts(ctx, req.Params.URI)
	}}
}

func (d Deps) readAlerts(ctx context.Context, uri string) ([]mcp.ResourceContents, error) {
	after, limit, err := alertsQuery(uri)
	if err != nil {
		return nil, err
	}
	svc, err := d.watchService()
	if err != nil {
		return nil, err
	}
	feed, err := svc.Alerts(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", probe.Clip(uri, 200), err)
	}
	if feed.Alerts == nil {
		feed.Alerts = []watch.AlertEntry{}
	}
	return jsonContents(uri, feed)
}

// isAlertsURI reports whether uri is the feed, with or without a query.
func isAlertsURI(uri string) bool {
	return uri == URIAlerts || strings.HasPrefix(uri, URIAlerts+"?")
}

// alertsQuery reads after and limit from a feed URI; errors name them.
func alertsQuery(uri string) (after string, limit int, err error) {
	_, query, _ := strings.Cut(uri, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", 0, &probe.FieldError{Field: "uri", Reason: "the query of " + URIAlerts + " is not valid: " + err.Error()}
	}
	for k := range q {
		if k != "after" && k != "limit" {
			return "", 0, &probe.FieldError{Field: "uri", Reason: fmt.Sprintf("%s takes after and limit, not %q", URIAlerts, probe.Clip(k, 64))}
		}
	}
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 {
			return "", 0, &probe.FieldError{Field: "limit", Reason: fmt.Sprintf("%q is not a positive number", probe.Clip(l, 64))}
		}
	}
	return q.Get("after"), limit, nil
}
