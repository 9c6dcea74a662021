package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/owner"
)

// withWatches opens the watch service on the configured database (or in
// etcd), runs fn and closes it. The CLI never runs the scheduler: a
// `tlswatch serve` does.
func (c *cli) withWatches(ctx context.Context, cfg Config, fn func(watch.Service) error) error {
	pr, err := prober(cfg)
	if err != nil {
		return err
	}
	if cfg.Etcd != nil {
		var alerts watch.Alerter
		if d, err := alertDispatcher(cfg, pr.Base, slog.New(slog.DiscardHandler)); err != nil {
			return err
		} else if d != nil {
			alerts = d
		}
		svc, closeFn, err := joinEtcd(ctx, cfg.Etcd, watch.Config{Prober: pr, MinInterval: cfg.MinInterval, NoScheduler: true}, alerts, nil)
		if err != nil {
			return err
		}
		defer closeFn()
		return flagNames(fn(svc))
	}
	m, err := owner.Open(ctx, owner.Config{
		DBPath: cfg.DBPath,
		Engine: watch.Config{Prober: pr, MinInterval: cfg.MinInterval, NoScheduler: true},
	})
	if err != nil {
		return fmt.Errorf("--db %s: %w", cfg.DBPath, err)
	}
	defer m.Close()
	return flagNames(fn(m))
}

// watchesJSON is the shape of the list_watches tool (list_expiring's is
// watch.ExpiringList).
type watchesJSON struct {
	Watches []watch.Watch `json:"watches"`
}

func runWatch(ctx context.Context, c *cli, args []string) (int, error) {
	if len(args) == 0 {
		return exitUnknown, errors.New("watch: missing subcommand (add, ls or rm)")
	}
	switch args[0] {
	case "add":
		return runWatchAdd(ctx, c, args[1:])
	case "ls", "list":
		return runWatchList(ctx, c, args[1:])
	case "rm", "remove":
		return runWatchRemove(ctx, c, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, usageText["watch"])
		return exitOK, nil
	}
	return exitUnknown, fmt.Errorf("watch: unknown subcommand %q (add, ls or rm)", args[0])
}

func runWatchAdd(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("watch add", c)
	tf := addTargetFlags(fs)
	schedule := fs.String("schedule", "", "cron spec or @every `spec` (default \"@every 6h\")")
	thresholds := fs.String("thresholds", "", "expiry `stages`, comma-separated: days (30 or 7d), hours (36h) or a share of the lifetime (20%) (default 30,14,7,1)")
	mcpLevel := fs.Bool("mcp", false, "also watch the MCP protocol level of the endpoint (an https URL of an MCP server)")
	var clientCerts stringList
	fs.Var(&clientCerts, "client-cert", "present this mTLS client certificate on every probe of the watch: `NAME=CERT,KEY` (PEM files; the watch keeps the name and the paths)")
	asJSON := fs.Bool("json", false, "print the watch as JSON")
	configPath := fs.String("config", "", "with --etcd: the nodes' operator config `file`, so that the alerts of the first probe are queued as a node queues them")
	raw, err := c.parse(fs, args, "target: missing (usage: tlswatch watch add TARGET)")
	if err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	if *configPath != "" && cfg.Etcd == nil {
		return exitUnknown, errors.New("--config: only with --etcd (on --db, the serve that owns the database queues the alerts)")
	}
	cfg.ConfigPath = *configPath
	if len(clientCerts) > 1 {
		return exitUnknown, errors.New("--client-cert: a watch presents one client certificate; give the flag once")
	}
	cfg.ClientCerts = clientCerts
	spec, err := watchSpec(cfg, tf, raw, *schedule, *thresholds, *mcpLevel)
	if err != nil {
		return exitUnknown, err
	}
	var w watch.Watch
	err = c.withWatches(ctx, cfg, func(svc watch.Service) (err error) {
		w, err = svc.Add(ctx, spec)
		return err
	})
	if err != nil {
		return exitUnknown, err
	}
	if *asJSON {
		return exitOK, writeJSON(c.stdout, w)
	}
	pal := colorFor(c.stdout)
	fmt.Fprintf(c.stdout, "watching %s as %s (%s, thresholds %s)\n",
		w.Target.String(), w.ID, w.Schedule, joinThresholds(w.ThresholdsDays))
	if r := w.LastReport; r != nil {
		fmt.Fprintf(c.stdout, "first probe: %s  %s\n", pal.status(r.Status), verdict(*r))
	}
	if m := w.MCP; m != nil {
		fmt.Fprintf(c.stdout, "MCP: %s %s, protocol %s, %d tools (%s), initialize %.0f ms\n",
			m.Server.Name, m.Server.Version, m.ProtocolVersion, m.ToolCount, m.ToolsHash, m.LatencyMS)
	} else if w.MCPLevel {
		fmt.Fprintln(c.stdout, "MCP: no answer yet (a failed probe; see the findings above)")
	}
	return exitOK, nil
}

// watchSpec is what `watch add` asks the watch service for: the flags as
// given (package watch validates them), the --ca-file roots by content and
// the --client-cert name with its files, so that whichever process probes
// the watch trusts and presents the same.
func watchSpec(cfg Config, tf *targetFlags, target, schedule, thresholds string, mcpLevel bool) (watch.Spec, error) {
	timeoutMS, err := timeoutMillis(tf.timeout)
	if err != nil {
		return watch.Spec{}, err
	}
	// Load them as a probe would: a bad file is an error now, not at the
	// first scheduled probe.
	_, certs, err := probeSetup(cfg)
	if err != nil {
		return watch.Spec{}, err
	}
	roots, err := caPEM(cfg.CAFiles)
	if err != nil {
		return watch.Spec{}, err
	}
	spec := watch.Spec{Target: target, IP: tf.ip, SNI: tf.sni, TimeoutMS: timeoutMS, Schedule: schedule,
		Thresholds: splitThresholds(thresholds), CAPEM: roots, MCP: mcpLevel}
	for _, cc := range certs {
		spec.ClientCert, spec.ClientCertFile, spec.ClientKeyFile = cc.Name, cc.CertFile, cc.KeyFile
	}
	return spec, flagNames(watch.CheckSpec(spec))
}

// splitThresholds splits "30,14,36h,20%" into its values, which package
// watch validates (an error names --thresholds).
func splitThresholds(s string) []any {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []any
	for _, f := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(f))
	}
	return out
}

// joinThresholds writes thresholds as --thresholds takes them.
func joinThresholds(ts []probe.Threshold) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ",")
}

func runWatchList(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("watch ls", c)
	asJSON := fs.Bool("json", false, `print {"watches": [...]} as the list_watches tool does`)
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	ws := []watch.Watch{}
	err = c.withWatches(ctx, cfg, func(svc watch.Service) error {
		return watch.EachPage(ctx, svc, watch.MaxPageLimit, func(page []watch.Watch) error {
			ws = append(ws, page...)
			return nil
		})
	})
	if err != nil {
		return exitUnknown, err
	}
	if *asJSON {
		return exitOK, writeJSON(c.stdout, watchesJSON{Watches: ws})
	}
	if len(ws) == 0 {
		fmt.Fprintln(c.stdout, "no watches (add one with: tlswatch watch add TARGET)")
		return exitOK, nil
	}
	writeWatchTable(c.stdout, ws, colorFor(c.stdout), time.Now())
	return exitOK, nil
}

func runWatchRemove(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("watch rm", c)
	asJSON := fs.Bool("json", false, "print the removed watch as JSON")
	arg, err := c.parse(fs, args, "watch rm: missing ID or TARGET")
	if err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	var w watch.Watch
	err = c.withWatches(ctx, cfg, func(svc watch.Service) (err error) {
		// An id first; a target when no watch has that id.
		if w, err = svc.Remove(ctx, arg, ""); errors.Is(err, watch.ErrNotFound) {
			w, err = svc.Remove(ctx, "", arg)
		}
		return err
	})
	if errors.Is(err, watch.ErrNotFound) {
		return exitUnknown, fmt.Errorf("watch rm: no watch with id or target %q (see tlswatch watch ls)", arg)
	}
	if err != nil {
		return exitUnknown, err
	}
	if *asJSON {
		return exitOK, writeJSON(c.stdout, w)
	}
	fmt.Fprintf(c.stdout, "removed %s (%s)\n", w.ID, w.Target.String())
	return exitOK, nil
}

func runExpiring(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("expiring", c)
	within := fs.String("within", "", "list certificates expiring within `days` (default 30; 0: only those at or past expiry)")
	asJSON := fs.Bool("json", false, `print {"within_days": N, "watches": [...]} as the list_expiring tool does`)
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	var days *int // nil: the watch service's default
	if *within != "" {
		n, err := strconv.Atoi(*within)
		if err != nil {
			return exitUnknown, fmt.Errorf("--within: %q is not a whole number of days", *within)
		}
		days = &n
	}
	if _, err := watch.ExpiringDays(days); err != nil {
		return exitUnknown, flagNames(err)
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	l := watch.ExpiringList{Watches: []watch.Watch{}}
	err = c.withWatches(ctx, cfg, func(svc watch.Service) error {
		var ws []watch.Watch
		for cursor := ""; ; {
			page, err := svc.Expiring(ctx, days, cursor, watch.MaxPageLimit)
			if err != nil {
				return err
			}
			ws = append(ws, page.Watches...)
			if cursor = page.NextCursor; cursor == "" {
				l, l.Watches = page, ws
				return nil
			}
		}
	})
	if err != nil {
		return exitUnknown, err
	}
	if l.Watches == nil {
		l.Watches = []watch.Watch{}
	}
	if *asJSON {
		return exitOK, writeJSON(c.stdout, l)
	}
	if len(l.Watches) == 0 {
		fmt.Fprintf(c.stdout, "nothing expires within %d days, and no watch is down\n", l.WithinDays)
		return exitOK, nil
	}
	writeWatchTable(c.stdout, l.Watches, colorFor(c.stdout), time.Now())
	return exitOK, nil
}

// writeWatchTable prints one row per watch, in the order given.
func writeWatchTable(w io.Writer, ws []watch.Watch, pal palette, now time.Time) {
	tb := table{header: []string{"ID", "TARGET", "STATE", "STATUS", "EXPIRES", "LIFE LEFT", "NOT AFTER", "CHECKED", "SCHEDULE"}}
	for _, wt := range ws {
		status := cell{text: "-"}
		expires, lifeLeft, notAfter := "-", "-", "-"
		if p := wt.LifetimeLeftPct; p != nil {
			lifeLeft = strconv.FormatFloat(*p, 'f', -1, 64) + "%"
		}
		if r := wt.LastReport; r != nil {
			status = cell{text: string(r.Status), color: statusColor(r.Status)}
			if r.Leaf != nil {
				expires = shortLifetime(r.Leaf, now)
				notAfter = r.Leaf.NotAfter.UTC().Format("2006-01-02")
			}
		}
		checked := "never"
		if wt.LastCheckedAt != nil {
			checked = ago(now.Sub(*wt.LastCheckedAt))
		}
		tb.rows = append(tb.rows, []cell{
			{text: wt.ID},
			{text: wt.Target.String()},
			{text: wt.State, color: stateColor(wt.State)},
			status,
			{text: expires},
			{text: lifeLeft},
			{text: notAfter},
			{text: checked},
			{text: wt.Schedule},
		})
	}
	tb.write(w, pal)
}

// shortLifetime is "41d", "-3d" (expired) or "5h".
func shortLifetime(l *probe.CertInfo, now time.Time) string {
	left := l.NotAfter.Sub(now)
	switch {
	case left < 0:
		return "expired"
	case left < 48*time.Hour:
		return fmt.Sprintf("%dh", int(left/time.Hour))
	}
	return fmt.Sprintf("%dd", int(left/(24*time.Hour)))
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// table aligns plain text, then paints: colour codes must not count as width.
type table struct {
	header []string
	rows   [][]cell
}

type cell struct {
	text  string
	color string // ANSI code, empty for plain
}

func (t *table) write(w io.Writer, pal palette) {
	widths := make([]int, len(t.header))
	for i, h := range t.header {
		widths[i] = len(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	line := func(cells []cell) {
		var b strings.Builder
		for i, c := range cells {
			b.WriteString(pal.paint(c.color, c.text))
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)+2))
			}
		}
		fmt.Fprintln(w, b.String())
	}
	head := make([]cell, len(t.header))
	for i, h := range t.header {
		head[i] = cell{text: h}
	}
	line(head)
	for _, r := range t.rows {
		line(r)
	}
}
