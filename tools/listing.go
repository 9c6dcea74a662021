package tools

// resources/list shows each watch as a resource (tlswatch://watches/{id}),
// which is what makes notifications/resources/list_changed on an added or
// removed watch mean something to a client. At 100,000 watches that list
// must come in pages: MCP's cursor and nextCursor, resourcesPage watches
// a page. mcp-go v1.2.1 lists only what was registered with AddResource
// (and registering 100,000 would hold them all in memory and sort them on
// every call), so its answer, the static resources, is completed in the
// after-hook of resources/list, which receives the result before it is
// sent: the first page is the static resources and the first watches, each
// later page only watches. Cursors are base64 (mcp-go decodes a cursor as
// base64 before the hook runs, and refuses one that is not).

import (
	"context"
	"encoding/base64"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/watch"
)

// resourcesPage is how many watches one resources/list page shows.
const resourcesPage = watch.DefaultPageLimit

// cursorPrefix marks a resources/list cursor as one of ours.
const cursorPrefix = "watches:"

// installResourceList registers the hook that pages the watches into
// resources/list.
func (d Deps) installResourceList(h *server.Hooks) {
	h.AddAfterListResources(func(ctx context.Context, _ any, req *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
		if res == nil || req == nil {
			return
		}
		d.listResources(ctx, req.Params.Cursor, res)
	})
}

// listResources makes res the page of resources/list at cursor.
func (d Deps) listResources(ctx context.Context, cursor mcp.Cursor, res *mcp.ListResourcesResult) {
	res.NextCursor = ""
	after := ""
	if cursor != "" {
		res.Resources = []mcp.Resource{} // the static resources are on the first page only
		raw, err := base64.StdEncoding.DecodeString(string(cursor))
		if err != nil || !strings.HasPrefix(string(raw), cursorPrefix) {
			return // not ours: an empty last page
		}
		after = strings.TrimPrefix(string(raw), cursorPrefix)
	}
	if d.Watch == nil {
		return
	}
	p, err := d.Watch.List(ctx, after, resourcesPage)
	if err != nil {
		d.Logger.Debug("resources/list: watches not listed", "err", err)
		return
	}
	for _, w := range p.Watches {
		res.Resources = append(res.Resources, mcp.NewResource(WatchURI(w.ID), "watch "+w.ID,
			mcp.WithResourceTitle(targetLabel(w.Target, w.ID)),
			mcp.WithResourceDescription("The watch of "+targetLabel(w.Target, w.ID)+": its configuration, state and latest Report."),
			mcp.WithMIMEType(mimeJSON)))
	}
	if p.NextCursor != "" {
		res.NextCursor = mcp.Cursor(base64.StdEncoding.EncodeToString([]byte(cursorPrefix + p.NextCursor)))
	}
}
