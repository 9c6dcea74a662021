package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"time"
)

// Target is a parsed, validated probe target. Build it with ParseTarget.
type Target struct {
	Host    string        // ASCII host name (IDN converted to punycode) or IP literal, without brackets
	Port    int           // 1..65535, default 443
	SNI     string        // server name sent; empty means Host (none for IP literals)
	IP      string        // dial this address instead of resolving Host
	Path    string        // URL path when the target was an https URL ("/mcp")
	Timeout time.Duration // whole-probe deadline; default 10s, max 60s
}

// FieldError is a bad input, naming the field and the reason. Tools and the
// CLI show it as is ("target: port 70000 out of range 1-65535").
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Options configure a probe. The zero value is usable: defaults are filled in.
type Options struct {
	// Now is the clock for classification; zero means the time at Run's start.
	Now time.Time
	// Roots is the trust store (system roots plus --ca-file). Never nil after
	// defaults: a nil pool would make macOS/Windows use the platform verifier.
	Roots *x509.CertPool
	// Thresholds are the expiry stages in days, default [30 14 7 1].
	Thresholds []int
}

// ErrNotImplemented marks the stub until the engine lands.
var ErrNotImplemented = errors.New("not implemented")

// Run probes one target. It returns an error only when nothing could be
// attempted; every server-side failure is a Finding inside the Report.
func Run(ctx context.Context, t Target, opts Options) (Report, error) {
	return Report{}, ErrNotImplemented
}
