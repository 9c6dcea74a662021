package main

import (
	"io"
	"os"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
)

// isTerminal reports whether w is a character device (a terminal). A
// variable so that tests can pretend.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// colorFor decides colour for output on w: only on a terminal, never with
// NO_COLOR set to anything but "" (https://no-color.org) or TERM=dumb.
func colorFor(w io.Writer) palette {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" || !isTerminal(w) {
		return palette{}
	}
	return palette{on: true}
}

// palette renders status and severity words, with ANSI colour when on.
type palette struct{ on bool }

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiGreen  = "\x1b[1;32m"
	ansiBlue   = "\x1b[1;34m"
)

func (p palette) paint(code, s string) string {
	if !p.on || code == "" {
		return s
	}
	return code + s + ansiReset
}

// statusColor is the colour of a status word.
func statusColor(s probe.Status) string {
	switch s {
	case probe.StatusOK:
		return ansiGreen
	case probe.StatusWarning:
		return ansiYellow
	case probe.StatusCritical, probe.StatusDown:
		return ansiRed
	}
	return ansiBold
}

// stateColor is the colour of a watch state (up, down, pending).
func stateColor(s string) string {
	switch s {
	case "up":
		return ansiGreen
	case "down":
		return ansiRed
	}
	return ""
}

func severityColor(s probe.Severity) string {
	switch s {
	case probe.SeverityCritical:
		return ansiRed
	case probe.SeverityWarning:
		return ansiYellow
	case probe.SeverityInfo:
		return ansiBlue
	}
	return ""
}

func (p palette) status(s probe.Status) string {
	word := strings.ToUpper(string(s))
	if word == "" {
		word = "UNKNOWN"
	}
	return p.paint(statusColor(s), word)
}

// severity is the severity word padded to a column of 8.
func (p palette) severity(s probe.Severity) string {
	word := strings.ToUpper(string(s))
	return p.paint(severityColor(s), word) + strings.Repeat(" ", max(0, 8-len(word)))
}

func (p palette) dim(s string) string { return p.paint(ansiDim, s) }
