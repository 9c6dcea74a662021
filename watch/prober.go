package watch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// ProbeFunc runs one probe. It has the signature of probe.Run, which is the
// default; tests may pass a fake. An error means nothing could be attempted
// (the target is invalid); every server-side failure is a Report with
// status down.
type ProbeFunc func(ctx context.Context, t probe.Target, opts probe.Options) (probe.Report, error)

// ClientCert is one of the operator's client certificates (mTLS) with the
// files it was loaded from, so that a watch can name them for another
// process.
type ClientCert struct {
	Name     string
	CertFile string // absolute
	KeyFile  string // absolute
	Pair     tls.Certificate
}

// LoadClientCerts loads --client-cert NAME=CERT,KEY specs (probe checks the
// form and loads the pair); errors are *probe.FieldError on "client-cert".
func LoadClientCerts(specs []string) (map[string]ClientCert, error) {
	out := make(map[string]ClientCert, len(specs))
	for _, spec := range specs {
		pairs, err := probe.LoadClientCerts([]string{spec})
		if err != nil {
			return nil, err
		}
		name, files, _ := strings.Cut(spec, "=")
		certFile, keyFile, _ := strings.Cut(files, ",")
		if _, dup := out[name]; dup {
			return nil, &probe.FieldError{Field: "client-cert", Reason: fmt.Sprintf("name %q given twice", name)}
		}
		c := ClientCert{Name: name, CertFile: absPath(certFile), KeyFile: absPath(keyFile), Pair: pairs[name]}
		out[name] = c
	}
	return out, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Prober is the one builder of a watch's probe: this process's base options
// (its trust store, outbound policy and client certificates) plus the
// configuration the watch carries (extra roots, client certificate, the
// creating process's outbound policy, SNI, IP, timeout, STARTTLS, path).
// Every process that probes a watch goes through it, so a watch is probed
// the same way whichever process owns it. Safe for concurrent use; the zero
// value probes with the system roots and the default policy.
type Prober struct {
	// Base are this process's options; Roots nil means the system roots.
	Base probe.Options
	// ClientCerts are this process's client certificates by name.
	ClientCerts map[string]ClientCert
	// Probe runs the probe. Default probe.Run.
	Probe ProbeFunc
	// Logger receives what a probe had to do without. Default: discard.
	Logger *slog.Logger
	// MCP runs the MCP level of an MCP-level watch's probe on top of its
	// TLS Report. Default mcpcheck.Watch.
	MCP MCPFunc
	// Tokens are this process's bearer tokens for protected MCP endpoints
	// by name (serve --mcp-token): a watch names one, never holds it.
	Tokens map[string]string
	// Redact holds every secret of this process, hidden in what an MCP
	// server echoes into a Report.
	Redact *redact.Set

	mu       sync.Mutex
	pools    map[string]trustPools
	policies map[string]*netpolicy.Policy
	files    map[string]loadedCert
}

type loadedCert struct {
	certMod, keyMod time.Time
	pair            tls.Certificate
}

// cacheMax bounds each cache of the Prober (distinct root sets, policies,
// client certificate files); past it the cache starts over.
const cacheMax = 256

// MCPFunc runs the MCP level of a probe: it has the signature of
// mcpcheck.Watch, which is the default.
type MCPFunc func(ctx context.Context, t probe.Target, rep probe.Report, opts mcpcheck.Options) probe.Report

// Run probes one watch at now: TLS, then, on an MCP-level watch, MCP
// (initialize, tools/list, server/discover where offered) within the same
// deadline, as check_mcp_endpoint does.
func (p *Prober) Run(ctx context.Context, rec *store.Record, now time.Time) (probe.Report, error) {
	t, o := p.Options(rec, now)
	run := p.Probe
	if run == nil {
		run = probe.Run
	}
	if !rec.MCP {
		return run(ctx, t, o)
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	rep, err := run(ctx, t, o)
	if err != nil {
		return rep, err
	}
	level := p.MCP
	if level == nil {
		level = mcpcheck.Watch
	}
	return level(ctx, t, rep, mcpcheck.Options{Probe: o, Token: p.token(rec), Redact: p.Redact}), nil
}

// token resolves the watch's token name in this process: the token itself
// is never stored with the watch. mcpcheck sends it only to an endpoint
// whose certificate verified.
func (p *Prober) token(rec *store.Record) string {
	if rec.Probe == nil || rec.Probe.TokenName == "" {
		return ""
	}
	tok, ok := p.Tokens[rec.Probe.TokenName]
	if !ok {
		p.logger().Warn("watch names an MCP token this process does not have (serve --mcp-token NAME=ENV_VAR); probing without it",
			"token_name", rec.Probe.TokenName, "target", rec.Target.Host)
	}
	return tok
}

// Options builds the target and options of one probe of rec at now.
//
// Trust: the base roots plus the watch's own (also counted as custom
// roots, like --ca-file's). Policy: a dial must pass both
// the base policy and the one stored with the watch. Client certificate:
// the watch's files when it has them, else this process's certificate of
// that name, else none (logged; the server's refusal then shows in the
// Report rather than the watch going silent).
func (p *Prober) Options(rec *store.Record, now time.Time) (probe.Target, probe.Options) {
	o := p.Base
	o.Now = now
	o.Thresholds = rec.Thresholds // never mutated in place
	o.RenewalCycle = rec.RenewalCycle
	if pc := rec.Probe; pc != nil {
		if len(pc.Roots) > 0 {
			t := p.trust(pc.Roots)
			o.Roots, o.CustomRoots = t.roots, t.custom
		}
		if pol := p.policy(pc.Policy); pol != nil {
			o.Control = pol.Wrap(o.Control)
		}
	}
	if rec.ClientCert != "" {
		o.ClientCertName = rec.ClientCert
		o.ClientCert = p.clientCert(rec)
	}
	t := probe.Target{Host: rec.Target.Host, Port: rec.Target.Port, SNI: rec.Target.SNI, IP: rec.Target.IP,
		Path: rec.Path, Scheme: rec.Scheme, Timeout: timeoutOf(rec)}
	return t, o
}

// timeoutOf is the whole-probe deadline of a watch.
func timeoutOf(rec *store.Record) time.Duration {
	timeout := time.Duration(rec.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > probe.MaxTimeout {
		timeout = probe.DefaultTimeout
	}
	return timeout
}

func (p *Prober) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// trustPools are a watch's trust store (the base roots plus its own) and
// its custom roots alone (the base's custom roots plus its own), as
// probe.Options takes them: the probe treats a watch's roots as it treats
// --ca-file roots.
type trustPools struct{ roots, custom *x509.CertPool }

// trust builds the pools of a watch's roots, once per distinct set.
func (p *Prober) trust(roots [][]byte) trustPools {
	h := sha256.New()
	for _, r := range roots {
		h.Write(r)
	}
	key := string(h.Sum(nil))
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.pools[key]; ok {
		return t
	}
	base := p.Base.Roots
	if base == nil {
		base, _ = probe.SystemRoots()
	}
	t := trustPools{roots: base.Clone(), custom: x509.NewCertPool()}
	if p.Base.CustomRoots != nil {
		t.custom = p.Base.CustomRoots.Clone()
	}
	for _, der := range roots {
		if c, err := x509.ParseCertificate(der); err == nil {
			t.roots.AddCert(c)
			t.custom.AddCert(c)
		}
	}
	if p.pools == nil || len(p.pools) >= cacheMax {
		p.pools = make(map[string]trustPools)
	}
	p.pools[key] = t
	return t
}

// policy compiles a stored policy; nil when it adds nothing to the default
// every probe applies.
func (p *Prober) policy(c netpolicy.Config) *netpolicy.Policy {
	if !c.DenyPrivate && len(c.AllowCIDRs) == 0 && len(c.DenyCIDRs) == 0 {
		return nil
	}
	key := fmt.Sprint(c.DenyPrivate, c.AllowCIDRs, c.DenyCIDRs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if pol, ok := p.policies[key]; ok {
		return pol
	}
	pol, err := netpolicy.New(c)
	if err != nil {
		// Validated when the watch was added: only a hand-edited file gets
		// here. Refuse everything rather than dial without the policy.
		p.logger().Error("watch: stored outbound policy does not compile; probing refused", "err", err)
		pol, _ = netpolicy.New(netpolicy.Config{DenyCIDRs: []string{"0.0.0.0/0", "::/0"}})
	}
	if p.policies == nil || len(p.policies) >= cacheMax {
		p.policies = make(map[string]*netpolicy.Policy)
	}
	p.policies[key] = pol
	return pol
}

// clientCert resolves the watch's client certificate (see Options).
func (p *Prober) clientCert(rec *store.Record) *tls.Certificate {
	if pc := rec.Probe; pc != nil && pc.ClientCertFile != "" {
		pair, err := p.loadFiles(pc.ClientCertFile, pc.ClientKeyFile)
		if err == nil {
			return pair
		}
		p.logger().Warn("watch: cannot load the watch's client certificate; trying this process's of that name",
			"client_cert", rec.ClientCert, "err", err)
	}
	if c, ok := p.ClientCerts[rec.ClientCert]; ok {
		pair := c.Pair
		return &pair
	}
	p.logger().Warn("watch names a client certificate this process cannot load; probing without it",
		"client_cert", rec.ClientCert, "target", rec.Target.Host)
	return nil
}

// loadFiles loads a certificate and key pair, again only when a file
// changed (a renewed client certificate is picked up at the next probe).
func (p *Prober) loadFiles(certFile, keyFile string) (*tls.Certificate, error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return nil, err
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return nil, err
	}
	key := certFile + "\x00" + keyFile
	p.mu.Lock()
	lc, ok := p.files[key]
	p.mu.Unlock()
	if ok && lc.certMod.Equal(ci.ModTime()) && lc.keyMod.Equal(ki.ModTime()) {
		return &lc.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	if p.files == nil || len(p.files) >= cacheMax {
		p.files = make(map[string]loadedCert)
	}
	p.files[key] = loadedCert{certMod: ci.ModTime(), keyMod: ki.ModTime(), pair: pair}
	p.mu.Unlock()
	return &pair, nil
}
