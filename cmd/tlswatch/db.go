package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// dbCommands are the `tlswatch db` subcommands: maintenance of the database
// file itself, run while no tlswatch serve holds it (except check of a
// backup). A function, not a package variable: the commands' usage text
// refers back to the command table.
func dbCommands() []dbCommand {
	return []dbCommand{
		{"check", runDBCheck},
		{"backup", runDBBackup},
		{"restore", runDBRestore},
		{"stats", runDBStats},
		{"compact", runDBCompact},
	}
}

type dbCommand struct {
	name string
	run  func(ctx context.Context, c *cli, args []string) (int, error)
}

func runDB(ctx context.Context, c *cli, args []string) (int, error) {
	if len(args) == 0 {
		return exitUnknown, fmt.Errorf("db: missing subcommand (%s)", dbNames())
	}
	for _, sub := range dbCommands() {
		if sub.name == args[0] {
			return sub.run(ctx, c, args[1:])
		}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, usageText["db"])
		return exitOK, nil
	}
	return exitUnknown, fmt.Errorf("db: unknown subcommand %q (%s)", args[0], dbNames())
}

func dbNames() string {
	s := ""
	for i, sub := range dbCommands() {
		if i > 0 {
			s += ", "
		}
		s += sub.name
	}
	return s
}

// errInUse explains ErrLocked for the db commands.
func errInUse(path string) error {
	return fmt.Errorf("--db %s: in use by a running tlswatch serve; stop it and run the command again", path)
}

// runDBCheck is `tlswatch db check [FILE]`: the database (or a backup)
// page by page, bbolt's consistency check, and every watch record decoded.
// Exit 0 whole, 1 usable but with warnings or records that do not decode
// (or were quarantined), 3 damaged or not checkable.
func runDBCheck(_ context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("db check", c)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	file, err := c.parseOptional(fs, args)
	if err != nil {
		return exitUnknown, err
	}
	if file == "" {
		cfg, err := c.config(true)
		if err != nil {
			return exitUnknown, err
		}
		file = cfg.DBPath
	}
	rep, err := store.CheckFile(file, time.Second)
	if errors.Is(err, store.ErrLocked) {
		return exitUnknown, fmt.Errorf("%s: in use by a running tlswatch serve; check its newest backup instead (tlswatch db check %s.backup-...), or stop it first", file, file)
	}
	if err != nil {
		return exitUnknown, err
	}
	if *asJSON {
		if err := writeJSON(c.stdout, rep); err != nil {
			return exitUnknown, err
		}
	} else {
		writeCheck(c, rep)
	}
	switch {
	case rep.Damaged():
		return exitUnknown, &store.DamageError{Path: file, Op: "check", Detail: rep.Problems[0]}
	case len(rep.Undecodable) > 0, len(rep.Quarantined) > 0, len(rep.Warnings) > 0:
		return exitWarning, nil
	}
	return exitOK, nil
}

func writeCheck(c *cli, rep store.CheckReport) {
	fmt.Fprintln(c.stdout, rep.String())
	for _, p := range rep.Problems {
		fmt.Fprintf(c.stdout, "  %s\n", oneLine(p))
	}
	if rep.More > 0 {
		fmt.Fprintf(c.stdout, "  (%d more)\n", rep.More)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(c.stdout, "  warning: %s\n", w)
	}
	for _, id := range rep.Undecodable {
		fmt.Fprintf(c.stdout, "  watch %s: its record does not decode (the next serve sets it aside)\n", id)
	}
	for _, q := range rep.Quarantined {
		fmt.Fprintf(c.stdout, "  watch %s: quarantined %s, its record did not decode (%s); add its target again to watch it\n",
			q.ID, q.At.Format(time.RFC3339), oneLine(q.Reason))
	}
	fmt.Fprintf(c.stdout, "checked in %s\n", rep.Elapsed.Round(time.Millisecond))
}

// runDBBackup is `tlswatch db backup`: one backup now, as serve takes them
// on its schedule.
func runDBBackup(_ context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("db backup", c)
	dir := fs.String("backup-dir", "", "write the backup in this `directory` (default: next to the database)")
	keep := fs.Int("backup-keep", store.DefaultBackupKeep, "keep this many `backups`, removing the oldest")
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	if *keep < 1 {
		return exitUnknown, fmt.Errorf("--backup-keep: must be at least 1, got %d", *keep)
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	if _, err := os.Stat(cfg.DBPath); err != nil {
		return exitUnknown, fmt.Errorf("--db %s: %w", cfg.DBPath, err)
	}
	db, err := store.Open(cfg.DBPath, store.Options{})
	if errors.Is(err, store.ErrLocked) {
		return exitUnknown, fmt.Errorf("--db %s: in use by a running tlswatch serve, which takes backups itself (--backup-every)", cfg.DBPath)
	}
	if err != nil {
		return exitUnknown, err
	}
	defer db.Close()
	info, err := db.Backup(store.BackupOptions{Dir: *dir, Keep: *keep})
	if err != nil {
		return exitUnknown, err
	}
	fmt.Fprintf(c.stdout, "backed up %s to %s (%.1f MB)\n", cfg.DBPath, info.Path, float64(info.Size)/1e6)
	return exitOK, nil
}

// runDBRestore is `tlswatch db restore [BACKUP]`: the given backup, or the
// newest one that passes the check, replaces the database; the replaced
// file is kept aside.
func runDBRestore(_ context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("db restore", c)
	dir := fs.String("backup-dir", "", "look for backups in this `directory` (default: next to the database)")
	from, err := c.parseOptional(fs, args)
	if err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	res, err := store.Restore(cfg.DBPath, from, *dir, time.Now())
	if errors.Is(err, store.ErrLocked) {
		return exitUnknown, errInUse(cfg.DBPath)
	}
	if err != nil {
		return exitUnknown, err
	}
	fmt.Fprintf(c.stdout, "restored %s from %s (%d watches)\n", cfg.DBPath, res.From, res.Check.Watches)
	if res.Aside != "" {
		fmt.Fprintf(c.stdout, "the replaced file is kept as %s; remove it once you no longer need it\n", res.Aside)
	}
	return exitOK, nil
}

// parseBackupEvery parses --backup-every: a positive duration, or 0 for
// no automatic backups.
func parseBackupEvery(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := parseDuration("--backup-every", s)
	if err == nil && d < time.Minute {
		return 0, fmt.Errorf("--backup-every: %s is under a minute (0 turns backups off)", s)
	}
	return d, err
}

// parseOptional parses a command's flags and at most one positional
// argument ("" when none).
func (c *cli) parseOptional(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseArgs(fs, args)
	switch {
	case err != nil:
		return "", c.flagError(fs, err)
	case len(pos) > 1:
		return "", fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[1])
	case len(pos) == 1:
		return pos[0], nil
	}
	return "", nil
}

// dbAdvice turns a damaged or foreign database into one line that says what
// to do; ok is false for any other error.
func dbAdvice(err error) (line string, ok bool) {
	var (
		d *store.DamageError
		n *store.NotDatabaseError
	)
	switch {
	case errors.As(err, &d):
		return fmt.Sprintf("%s; stop every tlswatch using it, then run 'tlswatch db restore --db %s' to bring back the newest good backup ('tlswatch db check --db %s' lists the damage)",
			oneLine(d.Error()), d.Path, d.Path), true
	case errors.As(err, &n):
		return oneLine(n.Error()) + "; point --db at the database, or move this file away to start a new one", true
	}
	return "", false
}

// runDBStats is `tlswatch db stats`: asked of the serve that owns the
// database when one runs (its retention shows), else read here.
func runDBStats(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("db stats", c)
	asJSON := fs.Bool("json", false, "print the statistics as JSON")
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	var u store.Usage
	if err := c.withWatches(ctx, cfg, func(svc watch.Service) (err error) {
		u, err = svc.DatabaseUsage(ctx)
		return err
	}); err != nil {
		return exitUnknown, err
	}
	if *asJSON {
		return exitOK, writeJSON(c.stdout, u)
	}
	fmt.Fprint(c.stdout, u.String())
	return exitOK, nil
}

// runDBCompact is `tlswatch db compact`: done by the serve that owns the
// database when one runs (an online copy and swap; it goes on serving),
// else here.
func runDBCompact(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("db compact", c)
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	start := time.Now()
	var res store.CompactResult
	if err := c.withWatches(ctx, cfg, func(svc watch.Service) (err error) {
		res, err = svc.CompactDatabase(ctx)
		return err
	}); err != nil {
		return exitUnknown, err
	}
	fmt.Fprintf(c.stdout, "compacted %s: %.1f MB -> %.1f MB in %s\n", cfg.DBPath,
		float64(res.Before)/1e6, float64(res.After)/1e6, time.Since(start).Round(time.Millisecond))
	return exitOK, nil
}
