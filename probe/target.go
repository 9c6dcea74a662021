package probe

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Target limits and defaults of DESIGN.md.
const (
	DefaultPort    = 443
	DefaultTimeout = 10 * time.Second
	MaxTimeout     = 60 * time.Second
	// maxTargetLen bounds the raw target: a host name is at most 253
	// characters, and a URL path beyond this is not a plausible endpoint.
	maxTargetLen = 2048
)

// TLSSchemes maps a URL scheme whose port speaks TLS only after a protocol
// upgrade (STARTTLS) to its default port: the protocols of starttls.go and
// their aliases. ParseTarget rejects any scheme not listed here other than
// https.
var TLSSchemes = startTLSSchemes()

// ParseTarget validates the Target fields of DESIGN.md and returns a Target
// ready for Run. Every rejection is a *FieldError naming the field:
// "target", "ip", "sni" or "timeout_ms". A timeoutMS of 0 means the default.
func ParseTarget(target, ip, sni string, timeoutMS int) (Target, error) {
	t := Target{Port: DefaultPort, Timeout: DefaultTimeout}
	raw := strings.TrimSpace(target)
	if raw == "" {
		return Target{}, &FieldError{"target", "is required"}
	}
	if len(raw) > maxTargetLen {
		return Target{}, &FieldError{"target", fmt.Sprintf("too long (%d characters, at most %d)", len(raw), maxTargetLen)}
	}
	hostport := raw
	if strings.Contains(raw, "://") {
		var err error
		if hostport, err = t.parseURL(raw); err != nil {
			return Target{}, err
		}
	} else if strings.IndexByte(raw, '/') >= 0 {
		// "host:port/path" without a scheme: read it as the https URL an
		// agent most likely meant.
		return ParseTarget("https://"+raw, ip, sni, timeoutMS)
	}
	if strings.ContainsRune(hostport, '@') {
		return Target{}, &FieldError{"target", "credentials (user@) are not allowed in the target"}
	}
	host, port, err := splitHostPort(hostport)
	if err != nil {
		return Target{}, &FieldError{"target", err.Error()}
	}
	if port != 0 {
		t.Port = port
	}
	if t.Host, err = normalizeHost(host); err != nil {
		return Target{}, &FieldError{"target", err.Error()}
	}
	if err := t.setIP(ip); err != nil {
		return Target{}, err
	}
	if err := t.setSNI(sni); err != nil {
		return Target{}, err
	}
	switch {
	case timeoutMS < 0 || time.Duration(timeoutMS)*time.Millisecond > MaxTimeout:
		return Target{}, &FieldError{"timeout_ms", fmt.Sprintf("%d out of range 0-%d", timeoutMS, MaxTimeout.Milliseconds())}
	case timeoutMS > 0:
		t.Timeout = time.Duration(timeoutMS) * time.Millisecond
	}
	return t, nil
}

// parseURL takes the scheme (and its default port) and the path of a
// target URL and returns its host[:port].
func (t *Target) parseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", &FieldError{"target", fmt.Sprintf("not a valid URL: %v", unwrapURLError(err))}
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
	case TLSSchemes[scheme] > 0:
		t.Scheme, t.Port = scheme, TLSSchemes[scheme]
	case scheme == "http":
		return "", &FieldError{"target", "scheme http is not TLS: use https://"}
	default:
		return "", &FieldError{"target", fmt.Sprintf("scheme %q not supported: use https://host[:port] or host[:port]", u.Scheme)}
	}
	if u.User != nil {
		return "", &FieldError{"target", "credentials (user@) are not allowed in the target"}
	}
	if u.Opaque != "" || u.Host == "" {
		return "", &FieldError{"target", "URL has no host"}
	}
	t.Path = u.EscapedPath()
	return u.Host, nil
}

// setIP validates the ip field (dial this address instead of resolving).
func (t *Target) setIP(ip string) error {
	if ip = strings.TrimSpace(ip); ip == "" {
		return nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]"))
	if err != nil || a.Zone() != "" {
		return &FieldError{"ip", fmt.Sprintf("%q is not an IP address", ip)}
	}
	t.IP = a.Unmap().String()
	return nil
}

// setSNI validates the sni field; without one, a host name is its own SNI
// (an IP literal sends none).
func (t *Target) setSNI(sni string) error {
	if sni = strings.TrimSpace(sni); sni == "" {
		if !isIPLiteral(t.Host) {
			t.SNI = t.Host
		}
		return nil
	}
	if _, err := netip.ParseAddr(strings.Trim(sni, "[]")); err == nil {
		return &FieldError{"sni", "must be a DNS name, not an IP address (TLS sends no SNI for IPs)"}
	}
	s, err := normalizeHost(sni)
	if err != nil {
		return &FieldError{"sni", err.Error()}
	}
	t.SNI = s
	return nil
}

// splitHostPort accepts host, host:port, [v6], [v6]:port and a bare IPv6
// address. Port 0 means none was given.
func splitHostPort(s string) (string, int, error) {
	if s == "" {
		return "", 0, fmt.Errorf("no host")
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("missing ] in %q", s)
		}
		host, rest := s[1:end], s[end+1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		if rest == "" {
			return host, 0, nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", 0, fmt.Errorf("unexpected %q after ]", rest)
		}
		p, err := parsePort(rest[1:])
		return host, p, err
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, 0, nil
	case 1:
		i := strings.IndexByte(s, ':')
		if i == 0 {
			return "", 0, fmt.Errorf("no host before the port")
		}
		p, err := parsePort(s[i+1:])
		return s[:i], p, err
	default:
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return "", 0, fmt.Errorf("%q is not a host, host:port or IPv6 address (write [addr]:port)", s)
		}
		return s, 0, nil
	}
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	if len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("port %q is not a number in 1-65535", s)
	}
	p, _ := strconv.Atoi(s)
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d out of range 1-65535", p)
	}
	return p, nil
}

// hostProfile converts IDNs to punycode and rejects what cannot be a host
// name (spaces, wildcards, empty labels, over-long labels).
var hostProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
	idna.Transitional(false),
)

// normalizeHost returns an IP literal in canonical form or a lower-case
// ASCII host name (punycode for IDNs) without a trailing dot.
func normalizeHost(h string) (string, error) {
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("IPv6 zones are not supported")
		}
		return a.Unmap().String(), nil
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" {
		return "", fmt.Errorf("no host")
	}
	if !utf8.ValidString(name) {
		// idna would map the bad bytes to U+FFFD and encode that.
		return "", fmt.Errorf("invalid host name %q: not valid UTF-8", h)
	}
	if len(name) > 253 {
		return "", fmt.Errorf("host name too long (%d characters, at most 253)", len(name))
	}
	ascii, err := hostProfile.ToASCII(name)
	if err != nil {
		return "", fmt.Errorf("invalid host name %q: %v", h, err)
	}
	ascii = strings.ToLower(ascii)
	// The result must be a fixed point: a host that normalises to a name
	// which does not normalise to itself could not be probed, stored and
	// parsed again as the same target.
	if again, err := hostProfile.ToASCII(ascii); err != nil || again != ascii {
		return "", fmt.Errorf("invalid host name %q: no stable ASCII form", h)
	}
	if len(ascii) > 253 {
		return "", fmt.Errorf("host name too long after IDN conversion (%d characters)", len(ascii))
	}
	// An all-numeric last label is a mistyped IPv4 address, not a name.
	last := ascii[strings.LastIndexByte(ascii, '.')+1:]
	if strings.TrimLeft(last, "0123456789") == "" {
		return "", fmt.Errorf("%q is neither a valid IP address nor a host name", h)
	}
	return ascii, nil
}

func isIPLiteral(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
