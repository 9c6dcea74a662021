// Package caa finds the CAA records that govern a domain name and says
// whether they let a given CA issue for it (RFC 8659). A CA checks CAA at
// every issuance, renewals included, so records that exclude the CA of the
// certificate in place make the next renewal fail, however well the
// renewal automation works.
package caa

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults of a Resolver.
const (
	DefaultTimeout = 3 * time.Second // per DNS query
	resolvConf     = "/etc/resolv.conf"
	// maxClimb bounds the labels walked up from a name: real names have
	// a handful; this only stops a hostile one.
	maxClimb = 16
)

// Record is one CAA resource record.
type Record struct {
	Flag  uint8
	Tag   string
	Value string
}

// Critical says whether the issuer-critical flag is set: a CA that does
// not understand the tag must not issue.
func (r Record) Critical() bool { return r.Flag&128 != 0 }

// String is the record as a zone file writes it: 0 issue "letsencrypt.org".
func (r Record) String() string { return fmt.Sprintf("%d %s %q", r.Flag, r.Tag, r.Value) }

// Set is the relevant CAA record set of a name: the records of the name
// itself or of its closest ancestor that has any (RFC 8659 section 3).
type Set struct {
	Name    string   // where the records were found; empty when nowhere
	Records []Record // empty: no CAA anywhere up the tree, any CA may issue
}

// Resolver looks up CAA records through one recursive DNS server.
type Resolver struct {
	// Server is host:port; empty means the first nameserver of
	// /etc/resolv.conf, at port 53.
	Server string
	// Timeout bounds each query; zero means DefaultTimeout.
	Timeout time.Duration
	// Cache keeps answers for their TTL (a minute to an hour); nil keeps
	// nothing.
	Cache *Cache
	// Now is the clock for the cache; zero means time.Now().
	Now time.Time
}

// Relevant finds the relevant record set for name, a DNS name or a
// wildcard ("*.example.com", whose records are those of example.com).
func (r Resolver) Relevant(ctx context.Context, name string) (Set, error) {
	name = strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(name, "*.")), ".")
	if name == "" {
		return Set{}, errors.New("caa: empty name")
	}
	server, err := r.server()
	if err != nil {
		return Set{}, err
	}
	labels := dns.SplitDomainName(name)
	for i := 0; i < len(labels) && i < maxClimb; i++ {
		at := strings.Join(labels[i:], ".")
		recs, err := r.lookup(ctx, server, at)
		if err != nil {
			return Set{}, err
		}
		if len(recs) > 0 {
			return Set{Name: at, Records: recs}, nil
		}
	}
	return Set{}, nil
}

func (r Resolver) server() (string, error) {
	if r.Server != "" {
		return r.Server, nil
	}
	cfg, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return "", fmt.Errorf("caa: no DNS server configured: %w", err)
	}
	if len(cfg.Servers) == 0 {
		return "", fmt.Errorf("caa: no nameserver in %s", resolvConf)
	}
	return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
}

// lookup asks for the CAA records of one name, through the cache.
func (r Resolver) lookup(ctx context.Context, server, name string) ([]Record, error) {
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	key := server + " " + name
	if recs, ok := r.Cache.get(key, now); ok {
		return recs, nil
	}
	recs, ttl, err := r.query(ctx, server, name)
	if err != nil {
		return nil, err
	}
	r.Cache.put(key, recs, now.Add(ttl))
	return recs, nil
}

// query sends one CAA question over UDP, and over TCP when the answer was
// truncated. A name that does not exist has no records; any other failure
// is an error, since a CA would refuse to issue on it too.
func (r Resolver) query(ctx context.Context, server, name string) ([]Record, time.Duration, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeCAA)
	m.SetEdns0(4096, false)
	var in *dns.Msg
	for _, network := range []string{"udp", "tcp"} {
		qctx, cancel := context.WithTimeout(ctx, timeout)
		c := &dns.Client{Net: network, Timeout: timeout}
		var err error
		in, _, err = c.ExchangeContext(qctx, m, server)
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("CAA lookup of %s at %s: %w", name, server, err)
		}
		if !in.Truncated {
			break
		}
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, negativeTTL, nil
	default:
		return nil, 0, fmt.Errorf("CAA lookup of %s at %s: %s", name, server, dns.RcodeToString[in.Rcode])
	}
	var recs []Record
	ttl := maxTTL
	for _, rr := range in.Answer {
		if c, ok := rr.(*dns.CAA); ok {
			recs = append(recs, Record{Flag: c.Flag, Tag: strings.ToLower(c.Tag), Value: c.Value})
			ttl = min(ttl, time.Duration(c.Hdr.Ttl)*time.Second)
		}
	}
	if len(recs) == 0 {
		ttl = negativeTTL
	}
	return recs, max(ttl, minTTL), nil
}
