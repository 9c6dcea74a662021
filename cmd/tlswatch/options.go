package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/tlswatch/tlswatch/netpolicy"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// probeSetup is where every command's probe options come from, so that
// serve, check, scan and watch probe alike: the trust store (system roots
// plus --ca-file), the outbound policy (serve's --deny-private,
// --allow-cidr, --deny-cidr; the default elsewhere), the client
// certificates (--client-cert), the CAs of --acme-directory and the CAA
// resolver of --dns-server. A watch adds its own configuration on top
// through watch.Prober. Errors name the flag.
func probeSetup(cfg Config) (probe.Options, map[string]watch.ClientCert, error) {
	roots, err := loadRoots(cfg.CAFiles) // its errors name --ca-file and the file
	if err != nil {
		return probe.Options{}, nil, err
	}
	// Every dial of every probe (and AIA, OCSP, MCP requests, alert
	// receivers) passes the outbound policy at dial time; the default policy
	// refuses cloud metadata and link-local addresses (target_blocked).
	policy, err := netpolicy.New(netpolicy.Config{DenyPrivate: cfg.DenyPrivate, AllowCIDRs: cfg.AllowCIDRs, DenyCIDRs: cfg.DenyCIDRs})
	if err != nil {
		return probe.Options{}, nil, err
	}
	certs, err := watch.LoadClientCerts(cfg.ClientCerts)
	var fe *probe.FieldError
	if errors.As(err, &fe) {
		return probe.Options{}, nil, fmt.Errorf("--%s: %s", fe.Field, fe.Reason)
	}
	if err != nil {
		return probe.Options{}, nil, err
	}
	// The --ca-file roots alone too: the probe says when a chain is trusted
	// only thanks to them, and weighs them when an issuer is missing.
	custom, err := customRoots(cfg.CAFiles)
	if err != nil {
		return probe.Options{}, nil, err
	}
	// The CAs asked for renewal windows and named in CAA, and the CAA
	// resolver.
	cas, err := knownCAs(cfg.ACMEDirectories)
	if err != nil {
		return probe.Options{}, nil, err
	}
	if cfg.DNSServer != "" {
		if _, port, err := net.SplitHostPort(cfg.DNSServer); err != nil || port == "" {
			return probe.Options{}, nil, fmt.Errorf("--dns-server: %q: want HOST:PORT", cfg.DNSServer)
		}
	}
	// One cache of verifications, AIA fetches, revocation answers, renewal
	// windows and CAA answers for every probe of the process.
	return probe.Options{Roots: roots, CustomRoots: custom, Policy: policy, Cache: probe.NewCache(),
		CAs: cas, DNSServer: cfg.DNSServer}, certs, nil
}

// knownCAs are the operator's --acme-directory CAs, then the public ones;
// nil (the probe's default) without any.
func knownCAs(specs []string) ([]probe.CA, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	var cas []probe.CA
	for _, s := range specs {
		ca, err := probe.ParseACMEDirectory(s)
		if err != nil {
			return nil, fmt.Errorf("--%w", err)
		}
		cas = append(cas, ca)
	}
	return append(cas, probe.PublicCAs...), nil
}

// prober is the watch.Prober of a command: its probe options, to which each
// watch adds its own.
func prober(cfg Config) (*watch.Prober, error) {
	base, certs, err := probeSetup(cfg)
	if err != nil {
		return nil, err
	}
	return &watch.Prober{Base: base, ClientCerts: certs}, nil
}

// caPEM is the text of the --ca-file files, which a watch stores (loadRoots
// has checked them).
func caPEM(files []string) (string, error) {
	var b strings.Builder
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("--ca-file %s: %w", f, err)
		}
		b.Write(raw)
		b.WriteString("\n")
	}
	return b.String(), nil
}
