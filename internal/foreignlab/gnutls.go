package foreignlab

import (
	"crypto/tls"
	"strconv"
	"strings"
	"testing"
)

// StartGnuTLS runs `gnutls-serv --http` (GnuTLS's test server). Ciphers is
// a GnuTLS priority string (default "NORMAL", the library's stock
// choice); the versions of cfg are appended to it. gnutls-serv has no
// option to bind one address: it listens on the wildcard addresses of the
// port, and is reached on 127.0.0.1 like every other lab server.
//
// Unlike the other stacks, gnutls-serv asks for a client certificate by
// default; NoClientCert turns that off (-a), so that the zero TLS is a
// plain server.
func StartGnuTLS(t testing.TB, cfg TLS) *Server {
	t.Helper()
	dir := newDir(t, "gnutls")
	f := cfg.write(t, dir, "")
	return start(t, gnutlsBin, dir, func(port int) (launch, error) {
		args := []string{"--port", strconv.Itoa(port), "--http", "--quiet",
			"--x509certfile", f.cert, "--x509keyfile", f.key,
			"--priority", gnuTLSPriority(cfg.Ciphers, cfg.versionsIn())}
		switch cfg.ClientAuth {
		case NoClientCert:
			args = append(args, "--disable-client-cert")
		case RequestClientCert:
			args = append(args, "--verify-client-cert", "--x509cafile", f.clientCA)
		case RequireClientCert:
			args = append(args, "--require-client-cert", "--verify-client-cert", "--x509cafile", f.clientCA)
		}
		if f.dh != "" {
			args = append(args, "--dhparams", f.dh)
		}
		if f.staple != "" {
			args = append(args, "--ocsp-response", f.staple, "--ignore-ocsp-response-errors")
		}
		for _, p := range cfg.ALPN {
			args = append(args, "--alpn", p)
		}
		return launch{args: args}, nil
	})
}

// gnuTLSPriority appends the enabled versions to a priority string.
func gnuTLSPriority(base string, vs []uint16) string {
	if base == "" {
		base = "NORMAL"
	}
	if len(vs) == 0 {
		return base
	}
	parts := []string{base, "-VERS-ALL"}
	for _, v := range vs {
		// VERS-TLS1.0 … VERS-TLS1.3, as GnuTLS spells them.
		parts = append(parts, "+VERS-"+strings.ReplaceAll(tls.VersionName(v), " ", ""))
	}
	return strings.Join(parts, ":")
}
