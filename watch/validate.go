package watch

// Every input of the watch service is validated and defaulted here, and
// only here: tools and the command line pass what they were given, and map
// the *probe.FieldError that comes back to their own names. The limits are
// also what the store must be able to hold (a test writes the largest
// accepted values and reads them back).

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/robfig/cron/v3"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// Defaults of DESIGN.md.
const (
	DefaultSchedule         = "@every 6h"
	DefaultFailureThreshold = 3
	DefaultExpiringDays     = 30
	DefaultHistoryLimit     = 20
	DefaultAlertsLimit      = 100
	// DefaultPageLimit is the page of List and Expiring when the caller
	// gives none: about 100 KB of JSON with the Reports.
	DefaultPageLimit = 100
)

// Limits.
const (
	// MaxThresholdDays bounds a threshold in days (and MaxThresholdHours
	// one in hours): a stage further out than a year would alert on every
	// freshly issued certificate.
	MaxThresholdDays  = 365
	MaxThresholdHours = MaxThresholdDays * 24
	// MaxThresholds bounds how many stages one watch has.
	MaxThresholds = 16
	// MaxScheduleLen bounds a schedule spec.
	MaxScheduleLen = 256
	// MaxFailureThreshold: a watch that needs more consecutive failures
	// to be called down is a typo.
	MaxFailureThreshold = 100
	MaxExpiringDays     = 3650
	MaxHistoryLimit     = 10000
	MaxAlertsLimit      = 1000
	// MaxPageLimit bounds a page of List and Expiring: about 1 MB of JSON,
	// so that no answer is built whole beyond a few megabytes.
	MaxPageLimit = 1000
	// maxCursorLen bounds a page cursor (ours are far shorter).
	maxCursorLen = 512
	// MaxRoots and MaxCAPEMBytes bound the extra trust roots of a watch.
	MaxRoots      = 16
	MaxCAPEMBytes = 64 << 10
	// MaxCIDRs bounds each list of a stored outbound policy.
	MaxCIDRs = 64
	// MaxSubjectLen bounds created_by and the session id.
	MaxSubjectLen = 256
	// MCPRecentKeep is how many recent probes of an MCP-level watch its
	// uptime and latency percentiles are computed from.
	MCPRecentKeep = 100
)

// scheduleParser accepts the standard five fields, an optional leading
// seconds field, CRON_TZ= prefixes and the descriptors (@every 1s, @hourly,
// @daily, ...).
var scheduleParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed, validated watch schedule.
type Schedule struct {
	Spec  string        // as given, trimmed
	Every time.Duration // > 0 for "@every D" schedules
	cron  cron.Schedule // the parsed spec (also for @every)
	// period estimates the time between two fires; it sizes the jitter of
	// cron specs and tells whether a watch is overdue after a restart.
	period time.Duration
}

// ParseSchedule validates a schedule (cron spec or @every) as watch_endpoint
// takes it; an empty spec means DefaultSchedule. Errors are
// *probe.FieldError{Field: "schedule"}.
func ParseSchedule(spec string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = DefaultSchedule
	}
	bad := func(reason string) (Schedule, error) {
		return Schedule{}, &probe.FieldError{Field: "schedule", Reason: reason}
	}
	if len(spec) > MaxScheduleLen {
		return bad(fmt.Sprintf("too long (%d characters, at most %d)", len(spec), MaxScheduleLen))
	}
	if strings.HasPrefix(spec, "@every") {
		// Check before cron does: cron silently rounds sub-second delays up to
		// one second and truncates fractions, which would hide a typo.
		d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(spec, "@every")))
		if err != nil {
			return bad(fmt.Sprintf("%q: want \"@every DURATION\" with a Go duration such as 30s, 5m or 6h", spec))
		}
		if d < time.Second {
			return bad(fmt.Sprintf("%q: interval must be at least 1s", spec))
		}
		if d%time.Second != 0 {
			return bad(fmt.Sprintf("%q: interval must be a whole number of seconds", spec))
		}
	}
	s, err := parseCron(spec)
	if err != nil {
		return bad(fmt.Sprintf("%q is not a cron spec or @every duration: %v", spec, err))
	}
	out := Schedule{Spec: spec, cron: s}
	if cd, ok := s.(cron.ConstantDelaySchedule); ok {
		out.Every = cd.Delay
		out.period = cd.Delay
		return out, nil
	}
	// A spec that can never fire (31 February) parses fine; reject it here so
	// the watch does not sit silently unscheduled.
	ref := time.Date(2026, 1, 1, 0, 0, 0, 0, time.Local)
	n1 := s.Next(ref)
	if n1.IsZero() {
		return bad(fmt.Sprintf("%q never fires", spec))
	}
	n2 := s.Next(n1)
	if n2.IsZero() {
		out.period = 24 * time.Hour
	} else {
		out.period = n2.Sub(n1)
	}
	return out, nil
}

// parseCron wraps cron's parser, which panics on some malformed input (a
// "TZ=" prefix without a following space slices out of range): the schedule
// comes from an agent, so a panic here must be a validation error.
func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed spec")
		}
	}()
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		return nil, fmt.Errorf("a time zone prefix must be followed by a space and the spec")
	}
	return scheduleParser.Parse(spec)
}

// config is a validated Spec: the configuration part of a store.Record.
type config struct {
	target store.Record // Target, Scheme, Path, TimeoutMS only
	sched  Schedule
	th     []probe.Threshold
	ft     int
	roots  [][]byte
	spec   Spec // the strings that passed validation as they are
}

// CheckSpec validates spec as Add does, for a caller that must reject bad
// input before it opens anything (the command line would otherwise create
// the database for nothing).
func CheckSpec(spec Spec) error {
	_, err := validate(spec)
	return err
}

// validate checks and defaults every field of a Spec.
func validate(s Spec) (config, error) {
	var c config
	var err error
	if c.target, err = targetRecord(s.Target, s.IP, s.SNI, s.TimeoutMS); err != nil {
		return c, err
	}
	if c.sched, err = ParseSchedule(s.Schedule); err != nil {
		return c, err
	}
	if c.th, err = NormalizeThresholds(s.Thresholds); err != nil {
		return c, err
	}
	if c.ft, err = failureThreshold(s.FailureThreshold); err != nil {
		return c, err
	}
	if c.roots, err = parseRoots(s.CAPEM); err != nil {
		return c, err
	}
	if err := checkNames(s); err != nil {
		return c, err
	}
	if err := checkMCP(s, c.target); err != nil {
		return c, err
	}
	if err := checkPolicy(s.Policy); err != nil {
		return c, err
	}
	c.spec = s
	c.spec.ClientCert = strings.TrimSpace(s.ClientCert)
	return c, nil
}

// subject is who a new watch of this configuration counts against.
func (c *config) subject() string { return subjectKey(c.spec.CreatedBy, c.spec.Session) }

// apply writes the configuration into r (a new record or the one being
// updated), keeping r's identity, state and creator.
func (c *config) apply(r *store.Record) {
	r.Target, r.Scheme, r.Path, r.TimeoutMS = c.target.Target, c.target.Scheme, c.target.Path, c.target.TimeoutMS
	r.Schedule, r.Thresholds, r.FailureThreshold = c.sched.Spec, c.th, c.ft
	r.ClientCert, r.MCP = c.spec.ClientCert, c.spec.MCP
	if !r.MCP {
		r.MCPInfo, r.MCPTools, r.MCPRecent = nil, nil, nil // no longer an MCP-level watch
	}
	r.Probe = &store.ProbeConfig{Roots: c.roots, ClientCertFile: c.spec.ClientCertFile, ClientKeyFile: c.spec.ClientKeyFile,
		Policy: c.spec.Policy, TokenName: c.spec.TokenName}
	if r.Probe.IsZero() {
		r.Probe = nil
	}
	if r.CreatedBy == "" {
		r.CreatedBy = c.spec.CreatedBy
	}
}

// targetRecord parses the target fields (probe.ParseTarget is their one
// validator) into the identity a watch is stored under: SNI is empty when it
// is the host.
func targetRecord(target, ip, sni string, timeoutMS int) (store.Record, error) {
	t, err := probe.ParseTarget(target, ip, sni, timeoutMS)
	if err != nil {
		return store.Record{}, err
	}
	r := store.Record{Target: probe.TargetInfo{Host: t.Host, Port: t.Port, SNI: t.SNI, IP: t.IP},
		Scheme: t.Scheme, Path: t.Path, TimeoutMS: int(t.Timeout / time.Millisecond)}
	if r.Target.SNI == r.Target.Host {
		r.Target.SNI = ""
	}
	return r, nil
}

func failureThreshold(n int) (int, error) {
	if n == 0 {
		return DefaultFailureThreshold, nil
	}
	if n < 1 || n > MaxFailureThreshold {
		return 0, &probe.FieldError{Field: "failure_threshold", Reason: fmt.Sprintf("%d out of range 1-%d", n, MaxFailureThreshold)}
	}
	return n, nil
}

// parseRoots reads the extra trust roots of a watch: PEM CERTIFICATE
// blocks, each a parseable certificate. Errors name "ca_pem".
func parseRoots(text string) ([][]byte, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	bad := func(format string, a ...any) ([][]byte, error) {
		return nil, &probe.FieldError{Field: "ca_pem", Reason: fmt.Sprintf(format, a...)}
	}
	if len(text) > MaxCAPEMBytes {
		return bad("%d bytes, at most %d", len(text), MaxCAPEMBytes)
	}
	var roots [][]byte
	rest := []byte(text)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return bad("certificate %d: %v", len(roots)+1, err)
		}
		if !slices.ContainsFunc(roots, func(r []byte) bool { return string(r) == string(block.Bytes) }) {
			roots = append(roots, block.Bytes)
		}
	}
	switch {
	case len(roots) == 0:
		return bad("no PEM CERTIFICATE block found")
	case len(roots) > MaxRoots:
		return bad("%d certificates, at most %d", len(roots), MaxRoots)
	}
	return roots, nil
}

// rootInfos summarises roots for the watch record.
func rootInfos(roots [][]byte) []RootInfo {
	var out []RootInfo
	for _, der := range roots {
		sum := sha256.Sum256(der)
		info := RootInfo{SHA256: hex.EncodeToString(sum[:])}
		if c, err := x509.ParseCertificate(der); err == nil {
			info.Subject = c.Subject.String()
		}
		out = append(out, info)
	}
	return out
}

// nameRE is the form of the names a watch refers to (a client
// certificate, an operator token): what the operator's flags accept.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func checkNames(s Spec) error {
	for _, f := range []struct{ field, value string }{{"client_cert", strings.TrimSpace(s.ClientCert)}, {"token_name", s.TokenName}} {
		if f.value != "" && !nameRE.MatchString(f.value) {
			return &probe.FieldError{Field: f.field, Reason: fmt.Sprintf("%q: a name is 1-64 letters, digits, '.', '_' or '-'", f.value)}
		}
	}
	if (s.ClientCertFile != "" || s.ClientKeyFile != "") && (s.ClientCert == "" || s.ClientCertFile == "" || s.ClientKeyFile == "") {
		return &probe.FieldError{Field: "client_cert", Reason: "certificate and key files need a name and each other"}
	}
	if len(s.CreatedBy) > MaxSubjectLen {
		return &probe.FieldError{Field: "created_by", Reason: fmt.Sprintf("%d characters, at most %d", len(s.CreatedBy), MaxSubjectLen)}
	}
	if len(s.Session) > MaxSubjectLen {
		return &probe.FieldError{Field: "session", Reason: fmt.Sprintf("%d characters, at most %d", len(s.Session), MaxSubjectLen)}
	}
	return nil
}

// checkMCP: an MCP-level watch speaks MCP over HTTPS, and only it
// presents a token.
func checkMCP(s Spec, target store.Record) error {
	if s.MCP && target.Scheme != "" {
		return &probe.FieldError{Field: "mcp", Reason: fmt.Sprintf("an MCP-level watch needs an https:// target, not %s://", target.Scheme)}
	}
	if s.TokenName != "" && !s.MCP {
		return &probe.FieldError{Field: "token_name", Reason: "a token is presented by MCP-level watches only (set mcp)"}
	}
	return nil
}

func checkPolicy(p netpolicy.Config) error {
	if len(p.AllowCIDRs) > MaxCIDRs || len(p.DenyCIDRs) > MaxCIDRs {
		return &probe.FieldError{Field: "policy", Reason: fmt.Sprintf("at most %d CIDRs per list", MaxCIDRs)}
	}
	if _, err := netpolicy.New(p); err != nil {
		return &probe.FieldError{Field: "policy", Reason: err.Error()}
	}
	return nil
}

// ExpiringDays defaults (nil) and checks list_expiring's window; Expiring
// applies it, and a caller may ask first (see CheckSpec).
func ExpiringDays(days *int) (int, error) {
	if days == nil {
		return DefaultExpiringDays, nil
	}
	if *days < 0 || *days > MaxExpiringDays {
		return 0, &probe.FieldError{Field: "within_days", Reason: fmt.Sprintf("%d out of range 0-%d", *days, MaxExpiringDays)}
	}
	return *days, nil
}

// limit defaults (0) and checks a page size.
func limit(field string, n, def, maxN int) (int, error) {
	if n == 0 {
		return def, nil
	}
	if n < 1 || n > maxN {
		return 0, &probe.FieldError{Field: field, Reason: fmt.Sprintf("%d out of range 1-%d", n, maxN)}
	}
	return n, nil
}

// required checks an id.
func required(field, v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", &probe.FieldError{Field: field, Reason: "required"}
	}
	return v, nil
}

// parseFeedCursor reads an alert feed cursor ("" is the start).
func parseFeedCursor(after string) (uint64, error) {
	if after == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(after, 10, 64)
	if err != nil {
		return 0, &probe.FieldError{Field: "after", Reason: fmt.Sprintf("%q is not a cursor of this feed", after)}
	}
	return n, nil
}

// Page cursors are opaque to callers: base64url of a letter naming the list
// they belong to and the position after which the next page starts (a
// watch id; for Expiring, its sort key).
const (
	cursorList     = 'w'
	cursorExpiring = 'e'
)

func makeCursor(kind byte, pos string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, pos...))
}

// parseCursor reads a cursor of the list kind ("" is the start) into its
// position. Errors are *probe.FieldError{Field: "cursor"}.
func parseCursor(kind byte, cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	if len(cursor) > maxCursorLen {
		return "", badCursor()
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) < 2 || raw[0] != kind || !utf8.Valid(raw[1:]) {
		return "", badCursor()
	}
	return string(raw[1:]), nil
}

func badCursor() error {
	return &probe.FieldError{Field: "cursor", Reason: "not a cursor of this list (pass next_cursor as a previous page returned it)"}
}
