package tools

import (
	"slices"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// TargetArgs are the target fields every probing tool takes (DESIGN.md).
type TargetArgs struct {
	Target    string `json:"target" jsonschema:"What to probe: host, host:port, [v6]:port or https://host[:port][/path]. The port defaults to 443."`
	IP        string `json:"ip,omitempty" jsonschema:"Dial this IP instead of resolving the host (like curl --resolve); SNI and name checks still use the host."`
	SNI       string `json:"sni,omitempty" jsonschema:"Server name to send in the TLS handshake when it differs from the host."`
	TimeoutMS int    `json:"timeout_ms,omitempty" jsonschema:"Whole-probe deadline in milliseconds: 1 to 60000; default 10000."`
}

// probeTarget validates the fields and returns the probe.Target. Errors are
// *probe.FieldError naming the field (prefixed, for bulk calls, with e.g.
// "targets[2].").
func (a TargetArgs) probeTarget(prefix string) (probe.Target, error) {
	t, err := a.parse()
	return t, prefixField(prefix, err)
}

// options are the server's probe options with the call's opt-in and
// opt-out checks and its client certificate.
func (d Deps) options(a DiagnoseArgs) (probe.Options, error) {
	cc, err := d.clientCert(a.ClientCert)
	if err != nil {
		return probe.Options{}, err
	}
	opts := d.ProbeOptions
	opts.Deep = a.Deep
	opts.NoRevocation = opts.NoRevocation || a.NoRevocation
	opts.SingleAddress = opts.SingleAddress || a.SingleAddress
	if cc != nil {
		pair := cc.Pair
		opts.ClientCert, opts.ClientCertName = &pair, cc.Name
	}
	return opts, nil
}

func (a TargetArgs) parse() (probe.Target, error) {
	// probe.ParseTarget is the one validator of the target fields (the CLI
	// uses it too); its errors are *probe.FieldError naming the field.
	return probe.ParseTarget(a.Target, a.IP, a.SNI, a.TimeoutMS)
}

// DiagnoseArgs are the arguments of the diagnosis tools (check_tls,
// inspect_chain): the target fields plus the opt-in costly checks.
type DiagnoseArgs struct {
	TargetArgs
	StartTLS      string `json:"starttls,omitempty" jsonschema:"STARTTLS first: smtp, imap, pop3, ftp, postgres, ldap or xmpp (as a target smtp://host:587 does)."`
	Deep          bool   `json:"deep,omitempty" jsonschema:"Also enumerate the accepted cipher suites per TLS version and the certificate served without SNI (many more handshakes)."`
	NoRevocation  bool   `json:"no_revocation,omitempty" jsonschema:"Skip the online OCSP/CRL revocation check (the stapled response is still read)."`
	SingleAddress bool   `json:"single_address,omitempty" jsonschema:"Probe only the first resolved address, not every A/AAAA record (skips inconsistent_backends)."`
	ClientCert    string `json:"client_cert,omitempty" jsonschema:"Present this client certificate (mTLS) when asked: the NAME the operator loaded with --client-cert NAME=CERT,KEY (never a path); its expiry is checked too (client_cert_expiring)."`
}

// clientCert resolves a client_cert argument to one of the operator's
// certificates; "" means none. An unknown name is an error naming the field.
func (d Deps) clientCert(name string) (*watch.ClientCert, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, nil
	}
	if c, ok := d.ClientCerts[name]; ok {
		return &c, nil
	}
	if len(d.ClientCerts) == 0 {
		return nil, fieldErr("client_cert", "%q is not loaded: this server has no client certificates (the operator adds them with serve --client-cert NAME=CERT,KEY)", name)
	}
	names := make([]string, 0, len(d.ClientCerts))
	for n := range d.ClientCerts {
		names = append(names, n)
	}
	slices.Sort(names)
	return nil, fieldErr("client_cert", "%q is not loaded (loaded: %s)", name, strings.Join(names, ", "))
}

// probeTarget applies starttls by rewriting the target as scheme://target,
// which is how probe.ParseTarget takes a STARTTLS protocol.
func (a DiagnoseArgs) probeTarget() (probe.Target, error) {
	st := strings.ToLower(strings.TrimSpace(a.StartTLS))
	if st == "" {
		return a.TargetArgs.probeTarget("")
	}
	if probe.TLSSchemes[st] == 0 {
		names := make([]string, 0, len(probe.TLSSchemes))
		for k := range probe.TLSSchemes {
			names = append(names, k)
		}
		slices.Sort(names)
		return probe.Target{}, fieldErr("starttls", "%q is not supported (one of %s)", a.StartTLS, strings.Join(names, ", "))
	}
	if strings.Contains(a.Target, "://") {
		return probe.Target{}, fieldErr("starttls", "give either starttls or a scheme in target, not both")
	}
	ta := a.TargetArgs
	ta.Target = st + "://" + strings.TrimSpace(a.Target)
	return ta.probeTarget("")
}

// targetLabel is how summaries name a target: host:port (fallback when
// there is no host, the host alone when there is no port).
func targetLabel(info probe.TargetInfo, fallback string) string {
	switch {
	case info.Host == "":
		return fallback
	case info.Port == 0:
		return info.Host
	}
	return info.String()
}
