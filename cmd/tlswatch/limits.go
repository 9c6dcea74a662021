package main

import (
	"flag"
	"fmt"
	"time"
)

// Limits are serve's resource caps; README "Security" states each. The
// zero value of a field means its default.
type Limits struct {
	// MaxSessions bounds the live streamable-HTTP sessions; one more
	// evicts the session idle longest (its client gets 404 and starts a
	// new one).
	MaxSessions int
	// MaxSubscriptions bounds the resources one session (or one 2026-07-28
	// listen stream) subscribes to.
	MaxSubscriptions int
	// MaxConnections bounds the open HTTP connections; one more closes the
	// connection that has waited longest without a request in progress.
	// Default: the descriptor limit less a reserve, at most
	// defaultMaxConnections.
	MaxConnections int
	// MaxMessageBytes bounds an HTTP request body and a stdio line.
	MaxMessageBytes int64
}

const (
	defaultMaxSessions      = 1000
	defaultMaxSubscriptions = 1000
	defaultMaxConnections   = 4096
	// descriptorReserve is what the connection bound leaves of the
	// descriptor limit for the database, probes, alert deliveries and
	// outgoing MCP checks.
	descriptorReserve = 256
	minMaxConnections = 16

	// HTTP read deadlines: the headers of a request, then its body
	// (counted from the end of the headers, once it is authenticated).
	readHeaderTimeout = 10 * time.Second
	readBodyTimeout   = 30 * time.Second
)

func limitFlags(fs *flag.FlagSet) *Limits {
	l := &Limits{}
	fs.IntVar(&l.MaxSessions, "max-sessions", defaultMaxSessions, "at most `n` live HTTP sessions; one more evicts the session idle longest")
	fs.IntVar(&l.MaxSubscriptions, "max-subscriptions", defaultMaxSubscriptions, "at most `n` resource subscriptions per session (or per 2026-07-28 listen stream)")
	fs.IntVar(&l.MaxConnections, "max-connections", 0, "at most `n` open HTTP connections; one more closes the longest-waiting idle one (default: the descriptor limit less 256, at most 4096)")
	fs.Int64Var(&l.MaxMessageBytes, "max-message-bytes", maxBodyBytes, "largest HTTP request body or stdio line, in `bytes`")
	return l
}

// check names the flag of a limit out of range.
func (l Limits) check() error {
	switch {
	case l.MaxSessions < 1:
		return fmt.Errorf("--max-sessions: %d; at least 1", l.MaxSessions)
	case l.MaxSubscriptions < 1:
		return fmt.Errorf("--max-subscriptions: %d; at least 1", l.MaxSubscriptions)
	case l.MaxConnections != 0 && l.MaxConnections < minMaxConnections:
		return fmt.Errorf("--max-connections: %d; at least %d", l.MaxConnections, minMaxConnections)
	case l.MaxMessageBytes < 64<<10:
		return fmt.Errorf("--max-message-bytes: %d; at least 65536", l.MaxMessageBytes)
	}
	return nil
}

// withDefaults fills the zero fields; nofile is the descriptor limit (0:
// unknown).
func (l Limits) withDefaults(nofile uint64) Limits {
	if l.MaxSessions == 0 {
		l.MaxSessions = defaultMaxSessions
	}
	if l.MaxSubscriptions == 0 {
		l.MaxSubscriptions = defaultMaxSubscriptions
	}
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = maxBodyBytes
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = defaultMaxConnections
		if nofile > 0 && nofile < uint64(defaultMaxConnections+descriptorReserve) {
			l.MaxConnections = max(minMaxConnections, int(nofile)-descriptorReserve)
		}
	}
	return l
}
