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
	"syscall"
	"time"

	"github.com/tlswatch/tlswatch/netpolicy"
)

// Outbound policy. Every connection the probe opens — the target,
// its other addresses, cipher scans, the handshake without SNI, AIA, OCSP
// and CRL fetches and every redirect they follow — goes through a
// net.Dialer whose Control runs the policy on the exact address about to be
// dialled, after name resolution and before connect(2). A DNS answer that
// changes between an earlier check and the dial (rebinding) therefore
// cannot slip through, and a refused address never sees a packet.

// classifyBlocked turns a policy refusal into target_blocked.
func classifyBlocked(err error) (Finding, bool) {
	var be *netpolicy.BlockedError
	if !errors.As(err, &be) {
		return Finding{}, false
	}
	return NewFinding(CodeTargetBlocked, fmt.Sprintf(
		"the target resolves to %s, which the outbound policy refuses (%s): tlswatch did not connect", be.Addr, be.Reason)), true
}

// controlFunc is the type of net.Dialer.Control.
type controlFunc = func(network, address string, c syscall.RawConn) error

// guardControl runs policy first, then the caller's own hook.
func guardControl(policy *netpolicy.Policy, next controlFunc) controlFunc {
	return func(network, address string, c syscall.RawConn) error {
		if err := policy.Control(network, address, c); err != nil {
			return err
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
}

// DialControl returns the net.Dialer.Control that every connection made on
// behalf of these options must use: the outbound policy (Options.Policy; nil
// means the default ranges only) followed by Options.Control. Packages that
// open their own connections for a probe (mcpcheck) use it.
func (o Options) DialControl() controlFunc {
	if o.guarded {
		return o.Control
	}
	return guardControl(o.Policy, o.Control)
}

// policyDialer dials host:port for the probe's HTTP fetches: it resolves the
// host with the probe's Resolver and tries each address in turn through
// the guarded Control. A policy refusal of every address is returned as
// is, so that callers can tell it apart with netpolicy.IsBlocked.
type policyDialer struct {
	resolver Resolver
	control  controlFunc
	timeout  time.Duration
}

func (d policyDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	nd := net.Dialer{Timeout: d.timeout, Control: d.control}
	if _, err := netip.ParseAddr(host); err == nil {
		return nd.DialContext(ctx, network, address)
	}
	lookup := "ip"
	switch network {
	case "tcp4":
		lookup = "ip4"
	case "tcp6":
		lookup = "ip6"
	}
	addrs, err := d.resolver.LookupNetIP(ctx, lookup, host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("dial %s: %s has no addresses", address, host)
	}
	var errs []error
	for i, a := range addrs {
		if i == 4 { // a long answer must not multiply the deadline
			break
		}
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// newFetchClient builds the HTTP client for AIA, OCSP, CRL and ACME fetches
// of one probe; https is verified against the probe's trust store (a
// private ACME CA's root comes with --ca-file). It never uses a proxy (a proxy would dial on our behalf and
// escape the policy) and keeps no idle connections: fetches are cached by
// URL, and an idle pool would keep goroutines and sockets alive after the
// probe.
func newFetchClient(resolver Resolver, control controlFunc, roots *x509.CertPool) *http.Client {
	d := policyDialer{resolver: resolver, control: control, timeout: aiaTimeout}
	tr := &http.Transport{
		Proxy:                  nil,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext:            d.DialContext,
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  aiaTimeout,
		TLSHandshakeTimeout:    aiaTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Timeout: aiaTimeout, Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// Each hop dials through the policy again; the count stops a
			// redirect loop, the scheme check file:, ldap: and friends.
			if len(via) >= 3 {
				return errors.New("stopped after 3 redirects")
			}
			return checkFetchURL(req.URL.String())
		}}
}
