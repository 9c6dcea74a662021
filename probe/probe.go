// Package probe is the tlswatch probe engine: it dials a target, completes a
// TLS handshake with verification off on purpose, verifies explicitly against
// an explicit trust store, and returns a Report in which every server-side
// failure is a Finding and the certificate data is kept whenever any
// certificate was received.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tlswatch/tlswatch/netpolicy"
)

// Target is a parsed, validated probe target. Build it with ParseTarget.
type Target struct {
	Host    string        // ASCII host name (IDN converted to punycode) or IP literal, without brackets
	Port    int           // 1..65535, default 443
	SNI     string        // server name sent; empty means Host (none for IP literals)
	IP      string        // dial this address instead of resolving Host
	Path    string        // URL path when the target was an https URL ("/mcp")
	Timeout time.Duration // whole-probe deadline; default 10s, max 60s

	// Scheme is a STARTTLS scheme registered in TLSSchemes ("smtp"...);
	// empty for direct TLS (https and host:port).
	Scheme string
}

// FieldError is a bad input, naming the field and the reason. Tools and the
// CLI show it as is ("target: port 70000 out of range 1-65535").
type FieldError struct {
	Field  string
	Reason string
}

// Error bounds the reason: a reason may quote the input, and an input can
// be megabytes.
func (e *FieldError) Error() string { return e.Field + ": " + Clip(e.Reason, maxReasonBytes) }

// maxReasonBytes bounds the reason of a FieldError as printed.
const maxReasonBytes = 512

// Clip shortens s to at most n bytes (on a rune boundary), marking the cut
// with an ellipsis: for inputs echoed in messages.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Resolver looks up a host's addresses. *net.Resolver satisfies it. It MUST
// honour ctx cancellation and be safe for concurrent use.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a probe. The zero value is usable: defaults are filled in.
type Options struct {
	// Now is the clock for classification; zero means the time at Run's start.
	Now time.Time
	// Roots is the trust store (system roots plus --ca-file). Never nil after
	// defaults: a nil pool would make macOS/Windows use the platform verifier.
	// A pool must not be changed once a probe has used it (its verdicts and
	// subjects are cached per pool).
	Roots *x509.CertPool
	// Thresholds are the expiry stages, default 30, 14, 7 and 1 days. A
	// stage is reached when the time left is within the threshold and
	// within the last third of the certificate's lifetime.
	Thresholds []Threshold
	// RenewalCycle is how often the caller has seen this endpoint's
	// certificate replaced (a watch that saw rotations); zero when
	// unknown. renewal_overdue names it, and knowing it marks the
	// certificate as renewed by automation whatever its lifetime.
	RenewalCycle time.Duration

	// Resolver resolves Target.Host when Target.IP is empty; default
	// net.DefaultResolver.
	Resolver Resolver
	// Policy is the operator's outbound address policy. Every connection
	// the probe opens (the target, its other addresses, cipher scans, AIA,
	// OCSP and CRL fetches and their redirects) is checked at dial time,
	// on the resolved address; a refusal is the finding target_blocked.
	// Nil refuses the default ranges only (cloud metadata, link-local) and
	// allows the rest, loopback included.
	Policy *netpolicy.Policy
	// Control, when set, is passed to net.Dialer.Control after the policy
	// for every connection the probe opens. An error it returns aborts the
	// dial and is classified by the probe.
	Control func(network, address string, c syscall.RawConn) error
	// HTTPClient fetches AIA issuers, OCSP/CRL and ACME renewal
	// information. Default: a client of this probe with a 5 s timeout that
	// resolves with Resolver, dials through Policy and Control, verifies
	// https against Roots, never uses a proxy and re-checks every
	// redirect. A client supplied here is trusted as is: its dialer must
	// apply DialControl itself.
	HTTPClient *http.Client
	// NoAIA turns off AIA fetching; an unknown authority is then diagnosed
	// from the served chain alone.
	NoAIA bool
	// NoLegacyProtocols skips the TLS 1.0/1.1 handshakes (bulk scans that
	// only want the verdict).
	NoLegacyProtocols bool
	// ClientCert is presented when the server asks for one (mTLS).
	ClientCert *tls.Certificate
	// ClientCertName names one of the operator's client certificates
	// (--client-cert NAME=...) for a caller that stores names, not keys (a
	// watch). Run ignores it: the caller's probe function resolves it into
	// ClientCert.
	ClientCertName string
	// IncludePEM adds PEM text to every certificate of a ChainReport.
	IncludePEM bool

	// Deep diagnostics (deep.go). Zero values: revocation checked
	// online, every address of the host probed, no cipher enumeration.
	//
	// Deep enables the costly checks: cipher suites per protocol version
	// (one handshake per accepted suite, plus five) and the certificate
	// served without SNI (one handshake).
	Deep bool
	// NoRevocation skips OCSP and CRL requests; a stapled response is
	// still checked.
	NoRevocation bool
	// RevocationTimeout bounds each OCSP/CRL request; default 5 s.
	RevocationTimeout time.Duration
	// SingleAddress probes only the first resolved address instead of
	// every A/AAAA record (Target.IP pins one address anyway).
	SingleAddress bool
	// CustomRoots are the --ca-file roots alone (Roots holds them too). When
	// set, a chain trusted only thanks to them gets untrusted_elsewhere.
	CustomRoots *x509.CertPool
	// Cache is shared by the probes given the same one (see Cache); nil
	// gives each Run a private Cache.
	Cache *Cache

	// Renewal checks (renewalinfo.go, caacheck.go). Zero values: both on,
	// with PublicCAs and the system's DNS resolver.
	//
	// CAs are the certificate authorities known for ARI and CAA (see CA);
	// nil means PublicCAs.
	CAs []CA
	// NoARI skips asking the CA for its renewal window: one HTTPS request
	// per certificate per CA-given interval (6 hours at Let's Encrypt),
	// plus the CA's directory once a day.
	NoARI bool
	// NoCAA skips the CAA lookup: one DNS query per label from the name up
	// to the first that has CAA records, each cached for its TTL.
	NoCAA bool
	// DNSServer answers the CAA queries (host:port); empty means the first
	// nameserver of /etc/resolv.conf. It is the operator's resolver, so
	// the outbound policy (which guards what targets make tlswatch dial)
	// does not apply to it.
	DNSServer string

	// guarded: Control already includes the policy (withDefaults ran).
	guarded bool
}

var (
	systemRootsOnce sync.Once
	systemRoots     *x509.CertPool
	systemRootsErr  error
)

// SystemRoots returns the platform roots, parsed once per process. When they
// cannot be loaded it returns an empty pool (never nil) and the error.
func SystemRoots() (*x509.CertPool, error) {
	systemRootsOnce.Do(func() {
		systemRoots, systemRootsErr = x509.SystemCertPool()
		if systemRoots == nil {
			systemRoots = x509.NewCertPool()
		}
	})
	return systemRoots, systemRootsErr
}

// withDefaults fills zero fields. It is the only place Run reads the wall
// clock for classification.
func (o Options) withDefaults() Options {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Roots == nil {
		o.Roots, _ = SystemRoots()
	}
	if len(o.Thresholds) == 0 {
		o.Thresholds = DefaultThresholds
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if !o.guarded {
		o.Control, o.guarded = o.DialControl(), true
	}
	if o.HTTPClient == nil {
		o.HTTPClient = newFetchClient(o.Resolver, o.Control, o.Roots)
	}
	if o.CAs == nil {
		o.CAs = PublicCAs
	}
	if o.Cache == nil {
		o.Cache = NewCache()
	}
	return o
}

// ErrCanceled is what Run and InspectChain return when the caller's context
// is cancelled before the probe is done (errors.Is(err, context.Canceled)
// holds too). The Report returned with it is partial and says nothing about
// the server: keep it out of history and status. A deadline that passes is
// a verdict instead, the finding timeout.
var ErrCanceled = fmt.Errorf("probe cancelled: %w", context.Canceled)

// Run probes one target. It returns an error only when nothing could be
// attempted (an invalid Target) or the caller cancelled ctx (ErrCanceled);
// every server-side failure is a Finding inside the Report.
func Run(ctx context.Context, t Target, opts Options) (Report, error) {
	if err := t.check(); err != nil {
		return Report{}, err
	}
	opts = opts.withDefaults()
	p := newProbeRun(t, opts)
	p.run(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		return *p.report, ErrCanceled
	}
	return *p.report, nil
}

// check rejects Targets that were not built by ParseTarget and cannot be
// probed.
func (t *Target) check() error {
	if t.Host == "" {
		return &FieldError{"target", "is required"}
	}
	if t.Port == 0 {
		t.Port = DefaultPort
	}
	if t.Port < 1 || t.Port > 65535 {
		return &FieldError{"target", "port out of range 1-65535"}
	}
	if t.Timeout < 0 || t.Timeout > MaxTimeout {
		return &FieldError{"timeout_ms", "out of range 0-60000"}
	}
	if t.Timeout == 0 {
		t.Timeout = DefaultTimeout
	}
	if t.IP != "" {
		if _, err := netip.ParseAddr(t.IP); err != nil {
			return &FieldError{"ip", "not an IP address"}
		}
	}
	if t.SNI == "" && !isIPLiteral(t.Host) {
		t.SNI = t.Host
	}
	return nil
}
