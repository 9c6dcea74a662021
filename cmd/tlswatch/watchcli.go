package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// withWatches opens the watch service on the configured database, runs fn
// and closes it. The CLI never runs the scheduler: a `tlswatch serve` does.
func (c *cli) withWatches(ctx context.Context, fn func(watch.Service) error) error {
	cfg, err := c.config(true)
	if err != nil {
		return err
	}
	opts, err := probeOptions(cfg)
	if err != nil {
		return err
	}
	m, err := watch.Open(ctx, watch.Config{
		DBPath:      cfg.DBPath,
		Probe:       probeWith(opts),
		MinInterval: cfg.MinInterval,
		NoScheduler: true,
	})
	if err != nil {
		return fmt.Errorf("--db %s: %w", cfg.DBPath, err)
	}
	defer m.Close()
	return flagNames(fn(m))
}

// probeWith adapts probe.Run to the watcher, adding the trust store.
func probeWith(base probe.Options) watch.ProbeFunc {
	return func(ctx context.Context, t probe.Target, opts probe.Options) (probe.Report, error) {
		opts.Roots, opts.CustomRoots, opts.Cache = base.Roots, base.CustomRoots, base.Cache
		return probe.Run(ctx, t, opts)
	}
}

// watchesJSON and expiringJSON are the shapes of the list_watches and
// list_expiring tools.
type watchesJSON struct {
	Watches []watch.Watch `json:"watches"`
}

type expiringJSON struct {
	WithinDays int           `json:"within_days"`
	Watches    []watch.Watch `json:"watches"`
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
	thresholds := fs.String("thresholds", "", "expiry stages in `days`, comma-separated (default 30,14,7,1)")
	asJSON := fs.Bool("json", false, "print the watch as JSON")
	raw, err := c.parse(fs, args, "target: missing (usage: tlswatch watch add TARGET)")
	if err != nil {
		return exitUnknown, err
	}
	t, err := tf.target(raw)
	if err != nil {
		return exitUnknown, err
	}
	days, err := parseThresholds(*thresholds)
	if err != nil {
		return exitUnknown, err
	}
	var w watch.Watch
	err = c.withWatches(ctx, func(svc watch.Service) (err error) {
		w, err = svc.Add(ctx, watch.Spec{Target: t, Schedule: *schedule, Thresholds: days})
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
		hostPort(w.Target.Host, w.Target.Port), w.ID, w.Schedule, joinInts(w.ThresholdsDays))
	if r := w.LastReport; r != nil {
		fmt.Fprintf(c.stdout, "first probe: %s  %s\n", pal.status(r.Status), verdict(*r))
	}
	return exitOK, nil
}

// parseThresholds parses "30,14,7,1"; range checks are the watcher's.
func parseThresholds(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var days []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--thresholds: %q is not a whole number of days (want e.g. 30,14,7,1)", strings.TrimSpace(f))
		}
		days = append(days, n)
	}
	return days, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func runWatchList(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("watch ls", c)
	asJSON := fs.Bool("json", false, `print {"watches": [...]} as the list_watches tool does`)
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	ws := []watch.Watch{}
	err := c.withWatches(ctx, func(svc watch.Service) error {
		l, err := svc.List(ctx)
		ws = append(ws, l...)
		return err
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
	var w watch.Watch
	err = c.withWatches(ctx, func(svc watch.Service) (err error) {
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
	fmt.Fprintf(c.stdout, "removed %s (%s)\n", w.ID, hostPort(w.Target.Host, w.Target.Port))
	return exitOK, nil
}

func runExpiring(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("expiring", c)
	within := fs.String("within", "30", "list certificates expiring within `days`")
	asJSON := fs.Bool("json", false, `print {"within_days": N, "watches": [...]} as the list_expiring tool does`)
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	days, err := strconv.Atoi(*within)
	if err != nil {
		return exitUnknown, fmt.Errorf("--within: %q is not a whole number of days", *within)
	}
	if days < 0 {
		return exitUnknown, fmt.Errorf("--within: %d is negative", days)
	}
	ws := []watch.Watch{}
	err = c.withWatches(ctx, func(svc watch.Service) error {
		l, err := svc.Expiring(ctx, days)
		ws = append(ws, l...)
		return err
	})
	if err != nil {
		return exitUnknown, err
	}
	if *asJSON {
		return exitOK, writeJSON(c.stdout, expiringJSON{WithinDays: days, Watches: ws})
	}
	if len(ws) == 0 {
		fmt.Fprintf(c.stdout, "nothing expires within %d days, and no watch is down\n", days)
		return exitOK, nil
	}
	writeWatchTable(c.stdout, ws, colorFor(c.stdout), time.Now())
	return exitOK, nil
}

// writeWatchTable prints one row per watch, in the order given.
func writeWatchTable(w io.Writer, ws []watch.Watch, pal palette, now time.Time) {
	tb := table{header: []string{"ID", "TARGET", "STATE", "STATUS", "EXPIRES", "NOT AFTER", "CHECKED", "SCHEDULE"}}
	for _, wt := range ws {
		status := cell{text: "-"}
		expires, notAfter := "-", "-"
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
			{text: hostPort(wt.Target.Host, wt.Target.Port)},
			{text: wt.State, color: stateColor(wt.State)},
			status,
			{text: expires},
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
