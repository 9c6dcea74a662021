package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/watch"
)

// addWatches adds n watches (h000.example ...) straight to the service.
func addWatches(t *testing.T, fw *fakeWatch, n int) {
	t.Helper()
	for i := range n {
		if _, err := fw.Add(context.Background(), watch.Spec{Target: fmt.Sprintf("h%03d.example", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// list_watches and list_expiring page by page: every watch once, in
// order, the summary telling how to go on; bad page arguments are refused
// naming the field.
func TestListToolsPages(t *testing.T) {
	fw := newFakeWatch(t)
	addWatches(t, fw, 7)
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	var ids []string
	args := map[string]any{"limit": 3}
	for pages := 1; ; pages++ {
		res := h.call("list_watches", args)
		if res.IsError {
			t.Fatalf("list_watches %v: %s", args, text(res))
		}
		l := decode[WatchList](t, res)
		for _, w := range l.Watches {
			ids = append(ids, w.ID)
		}
		if l.NextCursor == "" {
			if pages != 3 || len(l.Watches) != 1 {
				t.Errorf("%d pages, last of %d", pages, len(l.Watches))
			}
			break
		}
		if !strings.Contains(text(res), l.NextCursor) {
			t.Errorf("the summary does not say how to go on: %q", text(res))
		}
		args = map[string]any{"limit": 3, "cursor": l.NextCursor}
	}
	if len(ids) != 7 || !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 7 {
		t.Errorf("pages gave %v", ids)
	}
	if l := decode[WatchList](t, h.call("list_watches", nil)); len(l.Watches) != 7 || l.NextCursor != "" {
		t.Errorf("the default page: %d watches, next %q", len(l.Watches), l.NextCursor)
	}
	l := decode[ExpiringList](t, h.call("list_expiring", map[string]any{"within_days": 60, "limit": 5}))
	if len(l.Watches) != 5 || l.NextCursor == "" || l.WithinDays != 60 {
		t.Fatalf("first expiring page: %+v", l)
	}
	rest := decode[ExpiringList](t, h.call("list_expiring", map[string]any{"within_days": 60, "cursor": l.NextCursor}))
	if len(rest.Watches) != 2 || rest.NextCursor != "" {
		t.Errorf("second expiring page: %+v", rest)
	}
	for _, c := range []struct {
		tool  string
		args  map[string]any
		field string
	}{
		{"list_watches", map[string]any{"cursor": "garbage"}, "cursor:"},
		{"list_watches", map[string]any{"cursor": l.NextCursor}, "cursor:"},
		{"list_watches", map[string]any{"limit": 1001}, "limit:"},
		{"list_watches", map[string]any{"limit": -1}, "limit:"},
		{"list_watches", map[string]any{"limit": "ten"}, "limit:"},
		{"list_expiring", map[string]any{"cursor": 7}, "cursor:"},
		{"list_expiring", map[string]any{"limit": 5000}, "limit:"},
	} {
		if res := h.call(c.tool, c.args); !res.IsError || !strings.HasPrefix(text(res), c.field) {
			t.Errorf("%s %v: %v %q, want an error on %s", c.tool, c.args, res.IsError, text(res), c.field)
		}
	}
}

// The 65-threshold call is refused naming the field, before anything is
// stored.
func TestWatch65Thresholds(t *testing.T) {
	fw := newFakeWatch(t)
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	days := make([]any, 65)
	for i := range days {
		days[i] = i + 1
	}
	res := h.call("watch_endpoint", map[string]any{"target": "a.example", "thresholds_days": days})
	if !res.IsError || !strings.HasPrefix(text(res), "thresholds_days: 65 values, at most 16") {
		t.Fatalf("65 thresholds: %v %q", res.IsError, text(res))
	}
	if l := decode[WatchList](t, h.call("list_watches", nil)); len(l.Watches) != 0 {
		t.Errorf("stored %d watches", len(l.Watches))
	}
}

// The pages of tlswatch://watches and tlswatch://expiring after the first
// are the list's URI with the cursor as a query parameter.
func TestResourcePages(t *testing.T) {
	fw := newFakeWatch(t)
	addWatches(t, fw, 5)
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	read := func(uri string) (WatchList, error) {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = uri
		res, err := h.c.ReadResource(context.Background(), req)
		if err != nil {
			return WatchList{}, err
		}
		var l WatchList
		err = json.Unmarshal([]byte(res.Contents[0].(mcp.TextResourceContents).Text), &l)
		return l, err
	}
	var ids []string
	uri := URIWatches + "?limit=2"
	for uri != "" {
		l, err := read(uri)
		if err != nil {
			t.Fatalf("read %s: %v", uri, err)
		}
		for _, w := range l.Watches {
			ids = append(ids, w.ID)
		}
		uri = ""
		if l.NextCursor != "" {
			uri = URIWatches + "?cursor=" + l.NextCursor + "&limit=2"
		}
	}
	if len(ids) != 5 || !slices.IsSorted(ids) {
		t.Errorf("pages of %s: %v", URIWatches, ids)
	}
	if l, err := read(URIWatches); err != nil || len(l.Watches) != 5 || l.NextCursor != "" {
		t.Errorf("%s: %d watches, next %q, %v", URIWatches, len(l.Watches), l.NextCursor, err)
	}
	if l, err := read(URIExpiring + "?limit=1"); err != nil || l.NextCursor != "" {
		t.Errorf("expiring page: %+v %v", l, err) // nothing expires within 30 days
	}
	for _, bad := range []string{URIWatches + "?cursor=nope", URIWatches + "?limit=x", URIWatches + "?page=2", URIExpiring + "?limit=0&limit=5000"} {
		if _, err := read(bad); err == nil {
			t.Errorf("read %s succeeded", bad)
		}
	}
}

// resources/list shows the static resources, then every watch, a page at
// a time with MCP's cursor.
func TestResourcesListPages(t *testing.T) {
	fw := newFakeWatch(t)
	addWatches(t, fw, resourcesPage+30)
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	ctx := context.Background()
	var uris []string
	var cursor mcp.Cursor
	pages := 0
	for {
		req := mcp.ListResourcesRequest{}
		req.Params.Cursor = cursor
		res, err := h.c.ListResourcesByPage(ctx, req)
		if err != nil {
			t.Fatalf("resources/list page %d: %v", pages+1, err)
		}
		pages++
		for _, r := range res.Resources {
			uris = append(uris, r.URI)
		}
		if res.NextCursor == "" {
			break
		}
		cursor = res.NextCursor
	}
	watches := slices.DeleteFunc(slices.Clone(uris), func(u string) bool { return !strings.HasPrefix(u, uriWatchPrefix) })
	statics := len(AllResources(Deps{}))
	if pages != 2 || len(watches) != resourcesPage+30 || len(uris) != statics+len(watches) ||
		!slices.Contains(uris[:statics], URIWatches) || !slices.Contains(uris[:statics], URIExpiring) {
		t.Errorf("%d pages, %d resources, %d watches: %v", pages, len(uris), len(watches), uris[:statics+1])
	}
	if len(slices.Compact(slices.Clone(watches))) != len(watches) || !slices.IsSorted(watches) {
		t.Error("a watch listed twice or out of order")
	}
	req := mcp.ListResourcesRequest{}
	req.Params.Cursor = "not base64!"
	if _, err := h.c.ListResourcesByPage(ctx, req); err == nil {
		t.Error("a cursor that is not base64 was accepted")
	}
	// mcp-go's client follows the cursors to the end.
	if all, err := h.c.ListResources(ctx, mcp.ListResourcesRequest{}); err != nil || len(all.Resources) != len(uris) {
		t.Errorf("ListResources: %d resources, %v", len(all.Resources), err)
	}
}

// The cap per subject counts the watches each MCP session created when
// there is no OAuth subject; another session is not held back.
func TestWatchCapPerSession(t *testing.T) {
	fw := newFakeWatchConfig(t, watch.Config{MaxWatchesPerSubject: 2})
	h := newHarness(t, Deps{Watch: fw}, "2025-11-25")
	for i, want := range []string{"", "", "max_watches_per_subject: this session created 2 watches"} {
		res := h.call("watch_endpoint", map[string]any{"target": fmt.Sprintf("a%d.example", i)})
		if got := text(res); res.IsError != (want != "") || !strings.HasPrefix(got, want) {
			t.Errorf("watch %d: %v %q, want %q", i, res.IsError, got, want)
		}
	}
	other, err := client.NewInProcessClient(h.srv.MCPServer)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Initialize(context.Background(), mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "watch_endpoint", map[string]any{"target": "b.example"}
	if res, err := other.CallTool(context.Background(), req); err != nil || res.IsError {
		t.Errorf("another session: %v %s", err, text(res))
	}
}
