package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
)

const (
	defaultScanConcurrency = 8
	maxScanConcurrency     = 64
)

// scanResult is one line of `tlswatch scan` JSON output: the Report's fields
// plus where the target came from, or an error for a line that is not a
// valid target.
type scanResult struct {
	Input string `json:"input"`
	Line  int    `json:"line"`
	Error string `json:"error,omitempty"`
	*probe.Report
}

func runScan(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("scan", c)
	timeout := fs.String("timeout", "", "per-target deadline, a Go `duration` (default 10s, max 60s)")
	conc := fs.String("concurrency", strconv.Itoa(defaultScanConcurrency), fmt.Sprintf("probe at most `n` targets at once (1-%d)", maxScanConcurrency))
	asJSON := fs.Bool("json", false, "print JSON lines even on a terminal")
	file, err := c.parse(fs, args, "scan: missing FILE (a path, or - for stdin)")
	if err != nil {
		return exitUnknown, err
	}
	n, err := strconv.Atoi(*conc)
	if err != nil || n < 1 || n > maxScanConcurrency {
		return exitUnknown, fmt.Errorf("--concurrency: %q out of range 1-%d", *conc, maxScanConcurrency)
	}
	tf := &targetFlags{timeout: *timeout}
	if _, err := timeoutMillis(*timeout); err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(false)
	if err != nil {
		return exitUnknown, err
	}
	lines, err := readTargets(c.stdin, file)
	if err != nil {
		return exitUnknown, err
	}
	opts, _, err := probeSetup(cfg)
	if err != nil {
		return exitUnknown, err
	}

	out := scanOutput{c: c, total: len(lines), json: *asJSON || !isTerminal(c.stdout), pal: colorFor(c.stdout)}
	out.progress = isTerminal(c.stderr)

	// probe.Scan (shared with scan_endpoints) runs n workers that take
	// lines in order; results are written as they complete.
	scanCtx, stop := context.WithCancel(ctx)
	defer stop()
	results := make(chan scanResult)
	go func() {
		defer close(results)
		probe.Scan(scanCtx, len(lines), n, func(ctx context.Context, i int) (probe.Report, error) {
			t, err := tf.target(lines[i].text)
			if err != nil {
				return probe.Report{}, err
			}
			return probe.Run(ctx, t, opts)
		}, func(i int, r probe.Report, err error) {
			res := scanResult{Input: lines[i].text, Line: lines[i].n}
			if err != nil {
				res.Error = err.Error()
			} else {
				res.Report = &r
			}
			results <- res
		})
	}()

	out.showProgress()
	var writeErr error
	for r := range results {
		if writeErr == nil {
			if writeErr = out.write(r); writeErr != nil {
				stop() // no one reads on: let the workers finish early
			}
		}
	}
	if writeErr != nil {
		return exitUnknown, fmt.Errorf("scan: %w", writeErr)
	}
	out.finish()
	if ctx.Err() != nil {
		return exitUnknown, errors.New("scan: interrupted")
	}
	return out.exitCode(), nil
}

// targetLine is one non-blank, non-comment input line.
type targetLine struct {
	n    int
	text string
}

// readTargets reads FILE (or stdin for "-"): one target per line, blank
// lines and # comments skipped.
func readTargets(stdin io.Reader, name string) ([]targetLine, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		defer f.Close()
		r = f
	}
	var lines []targetLine
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		lines = append(lines, targetLine{n: n, text: text})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan: reading %s: %w", name, err)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("scan: no targets in %s", name)
	}
	return lines, nil
}

// scanOutput writes results as they complete: JSON lines, or a line per
// target for a person with a progress line on stderr.
type scanOutput struct {
	c        *cli
	json     bool
	progress bool
	pal      palette
	total    int
	done     int
	counts   map[string]int
}

func (o *scanOutput) write(r scanResult) error {
	o.done++
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	key := "invalid"
	if r.Report != nil {
		key = string(r.Status)
	}
	o.counts[key]++

	o.clearProgress()
	if o.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(o.c.stdout, "%s\n", b); err != nil {
			return err
		}
	} else {
		o.writeText(r)
	}
	o.showProgress()
	return nil
}

// showProgress draws the progress line on stderr (a terminal) while targets
// remain; the next result or the summary overwrites it.
func (o *scanOutput) showProgress() {
	if !o.progress || o.done >= o.total {
		return
	}
	const width = 24
	filled := o.done * width / o.total
	fmt.Fprintf(o.c.stderr, "scanning [%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), o.done, o.total)
}

func (o *scanOutput) writeText(r scanResult) {
	w := o.c.stdout
	if r.Report == nil {
		fmt.Fprintf(w, "%s  %s  line %d: %s\n", o.pal.paint(ansiBold, "UNKNOWN")+" ", r.Input, r.Line, r.Error)
		return
	}
	word := strings.ToUpper(string(r.Status))
	pad := strings.Repeat(" ", max(0, 8-len(word)))
	var codes []string
	for _, f := range sortedFindings(r.Findings) {
		if f.Severity.Rank() >= probe.SeverityWarning.Rank() {
			codes = append(codes, f.Code)
		}
	}
	detail := "no certificate"
	if r.Leaf != nil {
		detail = lifetime(r.Leaf, r.CheckedAt)
	}
	if len(codes) > 0 {
		detail += "  " + strings.Join(codes, ",")
	}
	fmt.Fprintf(w, "%s%s  %s  %s\n", o.pal.status(r.Status), pad, r.Input, detail)
}

func (o *scanOutput) clearProgress() {
	if o.progress {
		fmt.Fprint(o.c.stderr, "\r\x1b[K")
	}
}

// finish ends the progress line with a summary, on a terminal.
func (o *scanOutput) finish() {
	if !o.progress {
		return
	}
	o.clearProgress()
	var parts []string
	for _, k := range []string{"ok", "warning", "critical", "down", "invalid"} {
		if n := o.counts[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	fmt.Fprintf(o.c.stderr, "scanned %d target%s: %s\n", o.done, plural(o.done), strings.Join(parts, ", "))
}

// exitCode is the worst over all targets: critical or down, then unknown
// (a bad line), then warning, else ok.
func (o *scanOutput) exitCode() int {
	switch {
	case o.counts["critical"]+o.counts["down"] > 0:
		return exitCritical
	case o.counts["invalid"] > 0:
		return exitUnknown
	case o.counts["warning"] > 0:
		return exitWarning
	}
	return exitOK
}
