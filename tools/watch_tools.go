package tools

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/auth"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// watchService is the watcher, or the error the watch tools answer when
// none is wired (the database could not be opened).
func (d Deps) watchService() (watch.Service, error) {
	if d.Watch == nil {
		if d.WatchError != nil {
			return nil, fmt.Errorf("watching is not available: %w", d.WatchError)
		}
		return nil, errors.New("watching is not available: tlswatch was started without a usable database (see --db)")
	}
	return d.Watch, nil
}

// normalizeWatch makes a Watch validate against the derived schema.
func normalizeWatch(w *watch.Watch) {
	if w.ThresholdsDays == nil {
		w.ThresholdsDays = []probe.Threshold{}
	}
	if w.LastReport != nil {
		normalizeReport(w.LastReport)
	}
}

func normalizeWatches(ws []watch.Watch) []watch.Watch {
	if ws == nil {
		return []watch.Watch{}
	}
	for i := range ws {
		normalizeWatch(&ws[i])
	}
	return ws
}

// notFound words watch.ErrNotFound for the field that was looked up.
func notFound(err error, field, value string) error {
	if errors.Is(err, watch.ErrNotFound) {
		return fieldErr(field, "no watch %s %q (see list_watches)", map[string]string{"id": "with id", "target": "for target"}[field], value)
	}
	return err
}

// createdBy is who is calling: the subject of an OAuth token, or "" over
// stdio, without auth and with a static token (no identity).
func createdBy(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.Subject
	}
	return ""
}

// audit logs a change to the watches with who made it, when known: on a
// shared server the operator can tell who added or removed what.
func (d Deps) audit(ctx context.Context, what string, w watch.Watch) {
	if by := createdBy(ctx); by != "" {
		d.Logger.Info(what, "id", w.ID, "target", targetLabel(w.Target, w.ID), "by", by)
	}
}

// --- watch_endpoint ---

// WatchArgs are watch_endpoint's arguments. Package watch validates and
// defaults them (ranges and defaults below are its).
type WatchArgs struct {
	TargetArgs
	Schedule         string        `json:"schedule,omitempty" jsonschema:"When to probe: a cron spec (5 fields, or 6 with seconds) or @every DURATION such as @every 1h; default @every 6h."`
	ThresholdsDays   ThresholdsArg `json:"thresholds_days,omitempty" jsonschema:"Expiry stages that alert once per certificate when crossed: whole days (30 or \"7d\", 1 to 365), hours (\"36h\", 1 to 8760) or a share of the certificate's lifetime (\"20%\"). A stage is reached when the time left is within it and within the last third of the lifetime, so short-lived certificates stay quiet while renewed on time. At most 16; default [30, 14, 7, 1]."`
	FailureThreshold int           `json:"failure_threshold,omitempty" jsonschema:"Consecutive failed probes before the watch is down: 1 to 100; default 3."`
	ClientCert       string        `json:"client_cert,omitempty" jsonschema:"Present this client certificate (mTLS) on every probe of the watch: the NAME of a certificate the operator loaded with --client-cert NAME=CERT,KEY (never a path). Its own expiry is watched too (client_cert_expiring)."`
	CAPEM            string        `json:"ca_pem,omitempty" jsonschema:"Extra trust roots for this watch (a private CA): PEM CERTIFICATE blocks, at most 16. The watch stores them and every probe trusts them in addition to the server's trust store."`
	MCP              bool          `json:"mcp,omitempty" jsonschema:"Also watch the MCP level (an https URL of an MCP server): initialize and tools/list on every probe; shows mcp and mcp_stats; a changed tool list is an mcp_tools_changed event; no MCP answer counts toward down."`
	TokenName        string        `json:"token_name,omitempty" jsonschema:"For mcp: the NAME of an operator token (serve --mcp-token), sent only when the certificate verifies; never the token itself."`
}

func watchEndpointTool(d Deps) Tool {
	def := mcp.NewTool("watch_endpoint",
		mcp.WithDescription("Add or update (idempotent per target) a watch that probes a TLS endpoint on a schedule, persisted across restarts. "+
			"Probes once now and returns the watch with its id and first Report. The watch goes down after failure_threshold consecutive failures "+
			"and up after one success; expiry stages alert once per certificate. Subscribe to tlswatch://watches/{id} or tlswatch://expiring to be notified."),
		withInputSchema[WatchArgs](append(targetConstraints(),
			defaultValue("schedule", watch.DefaultSchedule),
			defaultValue("thresholds_days", probe.DefaultThresholds),
			intRange("failure_threshold", 1, watch.MaxFailureThreshold),
			defaultValue("failure_threshold", watch.DefaultFailureThreshold),
		)...),
		withOutputSchema[watch.Watch]("watch_endpoint"),
		annotate("Watch endpoint", false, false, true, true),
	)
	return Tool{Def: def, Handler: typedLinked(func(ctx context.Context, _ mcp.CallToolRequest, a WatchArgs) (watch.Watch, string, error) {
		svc, err := d.watchService()
		if err != nil {
			return watch.Watch{}, "", err
		}
		spec, err := d.watchSpec(ctx, a)
		if err != nil {
			return watch.Watch{}, "", err
		}
		w, err := svc.Add(ctx, spec)
		if err != nil {
			return watch.Watch{}, "", fmt.Errorf("watch_endpoint: %w", err)
		}
		d.audit(ctx, "watch added", w)
		normalizeWatch(&w)
		return w, watchSummary(w), nil
	}, func(w watch.Watch) []mcp.Content { return watchLinks([]watch.Watch{w}) })}
}

// watchSpec passes the arguments through, with what this server adds: the
// files of the named client certificate (only a name it loaded), its
// outbound policy, which the watch keeps, and who is calling (the OAuth
// subject, and the session the caps count against without one).
func (d Deps) watchSpec(ctx context.Context, a WatchArgs) (watch.Spec, error) {
	spec := watch.Spec{Target: a.Target, IP: a.IP, SNI: a.SNI, TimeoutMS: a.TimeoutMS, Schedule: a.Schedule,
		Thresholds: a.ThresholdsDays, FailureThreshold: a.FailureThreshold, CAPEM: a.CAPEM, MCP: a.MCP,
		TokenName: a.TokenName, Policy: d.ProbeOptions.Policy.Config(), CreatedBy: createdBy(ctx)}
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		spec.Session = cs.SessionID() // the subject of the caps when there is no OAuth subject
	}
	cc, err := d.clientCert(a.ClientCert)
	if err != nil {
		return watch.Spec{}, err
	}
	if cc != nil {
		spec.ClientCert, spec.ClientCertFile, spec.ClientKeyFile = cc.Name, cc.CertFile, cc.KeyFile
	}
	if name := strings.TrimSpace(a.TokenName); name != "" {
		// The watch keeps the name; the process that probes resolves it.
		if _, err := d.namedToken(name); err != nil {
			return watch.Spec{}, err
		}
		spec.TokenName = name
	}
	return spec, nil
}

// --- unwatch_endpoint ---

// UnwatchArgs are unwatch_endpoint's arguments: id, or target.
type UnwatchArgs struct {
	ID     string `json:"id,omitempty" jsonschema:"The watch id (w_...) as returned by watch_endpoint or list_watches."`
	Target string `json:"target,omitempty" jsonschema:"Remove the watch of this target instead (same form as watch_endpoint's target)."`
}

// UnwatchResult is unwatch_endpoint's output.
type UnwatchResult struct {
	Removed bool        `json:"removed"`
	Watch   watch.Watch `json:"watch"`
}

func unwatchEndpointTool(d Deps) Tool {
	def := mcp.NewTool("unwatch_endpoint",
		mcp.WithDescription("Remove a watch, by id or by target, with its history. Returns the removed watch."),
		withInputSchema[UnwatchArgs](),
		withOutputSchema[UnwatchResult]("unwatch_endpoint"),
		annotate("Unwatch endpoint", false, true, true, false),
	)
	return Tool{Def: def, Handler: typed(func(ctx context.Context, _ mcp.CallToolRequest, a UnwatchArgs) (UnwatchResult, string, error) {
		id, target := strings.TrimSpace(a.ID), strings.TrimSpace(a.Target)
		svc, err := d.watchService()
		if err != nil {
			return UnwatchResult{}, "", err
		}
		w, err := svc.Remove(ctx, id, target)
		if err != nil {
			if id != "" {
				return UnwatchResult{}, "", notFound(err, "id", id)
			}
			return UnwatchResult{}, "", notFound(err, "target", target)
		}
		d.audit(ctx, "watch removed", w)
		normalizeWatch(&w)
		return UnwatchResult{Removed: true, Watch: w},
			fmt.Sprintf("removed watch %s on %s", w.ID, targetLabel(w.Target, w.ID)), nil
	})}
}

// --- list_watches ---

// PageArgs are the page arguments of the listing tools.
type PageArgs struct {
	Cursor string `json:"cursor,omitempty" jsonschema:"next_cursor of the previous page."`
	Limit  int    `json:"limit,omitempty" jsonschema:"Page size."`
}

// pageConstraints are the schema keywords of PageArgs (package watch owns
// the limits).
func pageConstraints() []constraint {
	return []constraint{intRange("limit", 1, watch.MaxPageLimit), defaultValue("limit", watch.DefaultPageLimit)}
}

// ListWatchesArgs are list_watches' arguments: one page.
type ListWatchesArgs struct {
	PageArgs
}

// WatchList is list_watches' output and the tlswatch://watches resource:
// one page of the watches.
type WatchList struct {
	Watches []watch.Watch `json:"watches"`
	// StaleSince is set when a cluster node answers from a copy that may
	// be behind (etcd unreachable): the last time it was known current.
	StaleSince *time.Time `json:"stale_since,omitempty"`
	// NextCursor is the cursor of the next page; absent on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

// staler is a watch service that can answer from a copy that may be
// behind (a cluster node's).
type staler interface{ StaleSince() *time.Time }

func listWatchesTool(d Deps) Tool {
	def := mcp.NewTool("list_watches",
		mcp.WithDescription("List the watches with their state (pending, up, down), schedule, thresholds and latest Report, a page at a time "+
			"(next_cursor gives the next). Same content as the tlswatch://watches resource."),
		withInputSchema[ListWatchesArgs](pageConstraints()...),
		withOutputSchema[WatchList]("list_watches"),
		annotate("List watches", true, false, true, false),
	)
	return Tool{Def: def, Handler: typedLinked(func(ctx context.Context, _ mcp.CallToolRequest, a ListWatchesArgs) (WatchList, string, error) {
		out, err := d.listWatches(ctx, a.PageArgs)
		if err != nil {
			return WatchList{}, "", err
		}
		return out, watchesSummary(out.Watches, "no watches (add one with watch_endpoint)") + moreSummary(out.NextCursor), nil
	}, func(l WatchList) []mcp.Content { return watchLinks(l.Watches) })}
}

func (d Deps) listWatches(ctx context.Context, p PageArgs) (WatchList, error) {
	svc, err := d.watchService()
	if err != nil {
		return WatchList{}, err
	}
	l, err := svc.List(ctx, p.Cursor, p.Limit)
	if err != nil {
		return WatchList{}, fmt.Errorf("list watches: %w", err)
	}
	out := WatchList{Watches: normalizeWatches(l.Watches), NextCursor: l.NextCursor}
	if st, ok := svc.(staler); ok {
		out.StaleSince = st.StaleSince()
	}
	return out, nil
}

// moreSummary tells, below a page's summary, how to get the next one.
func moreSummary(next string) string {
	if next == "" {
		return ""
	}
	return "\nmore on the next page: call again with cursor " + strconv.Quote(next)
}

// --- list_expiring ---

// ExpiringArgs are list_expiring's arguments.
type ExpiringArgs struct {
	WithinDays *int `json:"within_days,omitempty" jsonschema:"Show watches whose certificate expires within this many days (0 to 3650; default 30), plus those already expired or down."`
	PageArgs
}

// ExpiringList is list_expiring's output and (for 30 days) the
// tlswatch://expiring resource: one page.
type ExpiringList struct {
	WithinDays int           `json:"within_days"`
	Watches    []watch.Watch `json:"watches"`
	StaleSince *time.Time    `json:"stale_since,omitempty"` // see WatchList
	// NextCursor is the cursor of the next page; absent on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

func listExpiringTool(d Deps) Tool {
	def := mcp.NewTool("list_expiring",
		mcp.WithDescription("List watches whose leaf certificate expires within within_days (default 30), is already expired, or that are down; soonest expiry first, "+
			"paged. For 30 days this is the tlswatch://expiring resource."),
		withInputSchema[ExpiringArgs](append(pageConstraints(), intRange("within_days", 0, watch.MaxExpiringDays), defaultValue("within_days", watch.DefaultExpiringDays))...),
		withOutputSchema[ExpiringList]("list_expiring"),
		annotate("List expiring", true, false, true, false),
	)
	return Tool{Def: def, Handler: typedLinked(func(ctx context.Context, _ mcp.CallToolRequest, a ExpiringArgs) (ExpiringList, string, error) {
		out, err := d.listExpiring(ctx, a.WithinDays, a.PageArgs)
		if err != nil {
			return ExpiringList{}, "", err
		}
		empty := fmt.Sprintf("no watch expires within %d days, is expired or down", out.WithinDays)
		return out, watchesSummary(out.Watches, empty) + moreSummary(out.NextCursor), nil
	}, func(l ExpiringList) []mcp.Content { return watchLinks(l.Watches) })}
}

// listExpiring is list_expiring for within (nil: the default window).
func (d Deps) listExpiring(ctx context.Context, within *int, p PageArgs) (ExpiringList, error) {
	svc, err := d.watchService()
	if err != nil {
		return ExpiringList{}, err
	}
	l, err := svc.Expiring(ctx, within, p.Cursor, p.Limit)
	if err != nil {
		return ExpiringList{}, fmt.Errorf("list expiring: %w", err)
	}
	return ExpiringList{WithinDays: l.WithinDays, Watches: normalizeWatches(l.Watches), StaleSince: l.StaleSince, NextCursor: l.NextCursor}, nil
}

// --- get_history ---

// HistoryArgs are get_history's arguments.
type HistoryArgs struct {
	ID         string `json:"id" jsonschema:"The watch id."`
	Limit      int    `json:"limit,omitempty" jsonschema:"Newest points (default 20; 10000 with since)."`
	Since      string `json:"since,omitempty" jsonschema:"Start: RFC 3339 or ago (30d)."`
	Until      string `json:"until,omitempty" jsonschema:"End, same forms."`
	Resolution string `json:"resolution,omitempty" jsonschema:"Or aggregates."`
}

// History is get_history's output: samples or aggregates, the summary of
// the range and the Reports stored at each change (with the one in force
// at its start).
type History = watch.History

func getHistoryTool(d Deps) Tool {
	def := mcp.NewTool("get_history",
		mcp.WithDescription("A watch's latest probe results, samples or hourly/daily aggregates over a range, and the Reports at its changes."),
		withInputSchema[HistoryArgs](intRange("limit", 1, watch.MaxHistoryLimit), enumOf("resolution", watch.ResolutionRaw, watch.ResolutionHour, watch.ResolutionDay)),
		withTopOutputSchema[History]("get_history", "id", "samples", "aggregates", "summary", "reports", "changes"),
		annotate("Get history", true, false, true, false),
	)
	return Tool{Def: def, Handler: typed(func(ctx context.Context, _ mcp.CallToolRequest, a HistoryArgs) (History, string, error) {
		svc, err := d.watchService()
		if err != nil {
			return History{}, "", err
		}
		id := strings.TrimSpace(a.ID)
		h, err := svc.History(ctx, watch.HistoryQuery{ID: id, Since: a.Since, Until: a.Until, Resolution: a.Resolution, Limit: a.Limit})
		if err != nil {
			return History{}, "", notFound(err, "id", id)
		}
		for i := range h.Reports {
			normalizeReport(&h.Reports[i])
		}
		for i := range h.Changes {
			normalizeReport(&h.Changes[i].Report)
		}
		return h, historySummary(h), nil
	})}
}

// historySummary is get_history's text: the range, the summary and the
// latest changes.
func historySummary(h History) string {
	var b strings.Builder
	n, what := len(h.Samples), "sample"
	if h.Resolution != watch.ResolutionRaw {
		n, what = len(h.Aggregates), h.Resolution+"ly aggregate"
	}
	fmt.Fprintf(&b, "watch %s: %d %s%s", h.ID, n, what, plural(n))
	if h.More {
		b.WriteString(" (more before them: raise limit or narrow the range)")
	}
	if s := h.Summary; s.Probes > 0 {
		fmt.Fprintf(&b, "; over them %d probe%s, uptime %.2f%% (%d failed)", s.Probes, plural(s.Probes), 100*s.Uptime, s.Failures)
		if s.Handshakes > 0 {
			fmt.Fprintf(&b, ", handshake p50 %.1f ms, p95 %.1f ms, max %.1f ms", s.HandshakeP50MS, s.HandshakeP95MS, s.HandshakeMaxMS)
		}
	}
	if h.StateSince != nil {
		fmt.Fprintf(&b, "; current state since %s", h.StateSince.Format("2006-01-02 15:04:05Z"))
	}
	shown := 0
	for _, r := range h.Changes {
		if r.Kind != "change" {
			continue
		}
		if shown == 10 {
			b.WriteString("\n… and more changes")
			break
		}
		fmt.Fprintf(&b, "\n- %s %s", r.Report.CheckedAt.UTC().Format("2006-01-02 15:04:05Z"), reportSummary(r.Report, h.ID))
		shown++
	}
	return b.String()
}
