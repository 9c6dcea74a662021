// Package netpolicy decides which addresses tlswatch may connect to. Every
// outbound dial (probe, AIA, OCSP, CRL, MCP probe, webhooks) checks the
// resolved address at dial time through Policy.Control, so a DNS answer that
// changes between a check and the dial (rebinding) cannot slip through.
package netpolicy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// BlockedError reports an address refused by the policy. Callers classify it
// with errors.As (the probe turns it into the target_blocked finding).
type BlockedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("address %s is blocked by policy: %s", e.Addr, e.Reason)
}

// Ranges refused by default: cloud metadata services and link-local
// addresses, which no legitimate TLS endpoint uses and which a prompt-injected
// agent would love to reach.
var defaultDeny = []namedPrefix{
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local / cloud metadata"},
	{netip.MustParsePrefix("fe80::/10"), "IPv6 link-local"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata (AWS IPv6)"},
	{netip.MustParsePrefix("100.100.100.200/32"), "cloud metadata (Alibaba)"},
}

// Ranges refused with DenyPrivate: the right setting for a shared deployment,
// where the server must not be a window into its own network.
var privateDeny = []namedPrefix{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private network"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private network"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private network"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("fc00::/7"), "IPv6 unique local"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
}

// nat64 is the NAT64 well-known prefix (RFC 6052).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

type namedPrefix struct {
	prefix netip.Prefix
	reason string
}

// Policy is an outbound address policy. The zero value refuses only the
// default ranges (metadata and link-local). It is immutable after
// construction and safe for concurrent use.
type Policy struct {
	denyPrivate bool
	allow       []netip.Prefix
	deny        []netip.Prefix
	cfg         Config
}

// Config is the operator's choice (--deny-private, --allow-cidr, --deny-cidr).
type Config struct {
	DenyPrivate bool
	AllowCIDRs  []string // explicit allows win over every deny, default ones included
	DenyCIDRs   []string
}

// New validates cfg. Errors name the flag.
func New(cfg Config) (*Policy, error) {
	p := &Policy{denyPrivate: cfg.DenyPrivate,
		cfg: Config{DenyPrivate: cfg.DenyPrivate, AllowCIDRs: slices.Clone(cfg.AllowCIDRs), DenyCIDRs: slices.Clone(cfg.DenyCIDRs)}}
	var err error
	if p.allow, err = parsePrefixes("--allow-cidr", cfg.AllowCIDRs); err != nil {
		return nil, err
	}
	if p.deny, err = parsePrefixes("--deny-cidr", cfg.DenyCIDRs); err != nil {
		return nil, err
	}
	return p, nil
}

func parsePrefixes(field string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, raw := range list {
		for _, s := range strings.Split(raw, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !strings.Contains(s, "/") {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return nil, fmt.Errorf("%s: %q is not a CIDR or an IP address", field, s)
				}
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR: %v", field, s, err)
			}
			out = append(out, pfx.Masked())
		}
	}
	return out, nil
}

// Config is what the policy was built from (the zero Config for a nil
// Policy), so that a watch can carry the policy of the process that
// created it.
func (p *Policy) Config() Config {
	if p == nil {
		return Config{}
	}
	return p.cfg
}

// Check returns a *BlockedError when a is refused. A nil Policy allows
// everything but the default ranges.
func (p *Policy) Check(a netip.Addr) error {
	a = a.Unmap()
	if !a.IsValid() {
		return &BlockedError{Addr: a, Reason: "invalid address"}
	}
	if p != nil {
		for _, pfx := range p.allow {
			if pfx.Contains(a) {
				return nil
			}
		}
		for _, pfx := range p.deny {
			if pfx.Contains(a) {
				return &BlockedError{Addr: a, Reason: "in --deny-cidr " + pfx.String()}
			}
		}
	}
	// An address in the NAT64 well-known prefix reaches the IPv4 address
	// embedded in its last 32 bits (RFC 6052): on an IPv6-only host with
	// DNS64, 64:ff9b::a9fe:a9fe is the metadata service. Judge both
	// (an explicit allow of the IPv6 address, above, still wins).
	if nat64.Contains(a) {
		b := a.As16()
		if err := p.Check(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); err != nil {
			var be *BlockedError
			if errors.As(err, &be) {
				return &BlockedError{Addr: a, Reason: "NAT64 of " + be.Addr.String() + ": " + be.Reason}
			}
			return err
		}
	}
	for _, np := range defaultDeny {
		if np.prefix.Contains(a) {
			return &BlockedError{Addr: a, Reason: np.reason}
		}
	}
	if p != nil && p.denyPrivate {
		for _, np := range privateDeny {
			if np.prefix.Contains(a) {
				return &BlockedError{Addr: a, Reason: np.reason + " (--deny-private)"}
			}
		}
		if a.IsMulticast() {
			return &BlockedError{Addr: a, Reason: "multicast (--deny-private)"}
		}
	}
	return nil
}

// Control is a net.Dialer.Control function: it runs after name resolution,
// on the exact address about to be dialled.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("policy: unexpected dial address %q: %w", address, err)
	}
	return p.Check(ap.Addr())
}

// Wrap returns a net.Dialer.Control that checks the policy, then runs next
// (when not nil): a dial must pass both.
func (p *Policy) Wrap(next func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if err := p.Control(network, address, c); err != nil {
			return err
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
}

// Dialer returns a net.Dialer whose every connection passes the policy.
func (p *Policy) Dialer(base net.Dialer) *net.Dialer {
	d := base
	d.Control = p.Wrap(base.Control)
	return &d
}

// IsBlocked reports whether err (possibly wrapped) is a policy refusal.
func IsBlocked(err error) bool {
	var be *BlockedError
	return errors.As(err, &be)
}
