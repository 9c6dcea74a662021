package foreignlab

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// StartOpenSSL runs `openssl s_server -www` (OpenSSL's own test server,
// the reference behaviour of the library most TLS servers are built on).
// It serves one connection at a time, which the probe's sequential and
// concurrent handshakes both survive (the backlog queues them).
func StartOpenSSL(t testing.TB, cfg TLS) *Server {
	t.Helper()
	dir := newDir(t, "openssl")
	f := cfg.write(t, dir, "")
	return start(t, opensslBin, dir, func(port int) (launch, error) {
		args := []string{"s_server", "-accept", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			"-www", "-cert", f.leafOnly, "-key", f.key}
		if f.chain != "" {
			args = append(args, "-cert_chain", f.chain)
		}
		args = append(args, openSSLVersionArgs(cfg.versionsIn())...)
		if cfg.Ciphers != "" {
			args = append(args, "-cipher", cfg.Ciphers)
		}
		if f.dh != "" {
			args = append(args, "-dhparam", f.dh)
		}
		if f.staple != "" {
			args = append(args, "-status_file", f.staple)
		}
		if len(cfg.ALPN) > 0 {
			args = append(args, "-alpn", strings.Join(cfg.ALPN, ","))
		}
		switch cfg.ClientAuth {
		case RequestClientCert:
			// -verify_return_error: without it s_server logs a failed
			// verification and carries on, which no real server does.
			args = append(args, "-verify", "4", "-verify_return_error", "-CAfile", f.clientCA)
		case RequireClientCert:
			args = append(args, "-Verify", "4", "-verify_return_error", "-CAfile", f.clientCA)
		}
		return launch{args: args}, nil
	})
}

// openSSLVersionArgs bounds the versions with -min_protocol/-max_protocol
// and switches off any gap with -no_tls1_1 and the like.
func openSSLVersionArgs(vs []uint16) []string {
	if len(vs) == 0 {
		return nil
	}
	lo, hi := vs[0], vs[len(vs)-1]
	args := []string{"-min_protocol", openSSLVersion(lo), "-max_protocol", openSSLVersion(hi)}
	for _, v := range gaps(vs) {
		args = append(args, "-no_"+strings.NewReplacer("TLSv1.", "tls1_", "TLSv1", "tls1").Replace(openSSLVersion(v)))
	}
	return args
}

// Versions reports the version of each stack installed here, as its
// binary prints it ("nginx/1.22.1", "OpenSSL 3.0.19 ..."), for the README
// table and failure messages. A missing binary is reported, not fatal.
func Versions() map[string]string {
	out := map[string]string{}
	for _, b := range []struct {
		bin  binary
		args []string
	}{
		{nginxBin, []string{"-v"}},
		{opensslBin, []string{"version"}},
		{gnutlsBin, []string{"--version"}},
		{stunnelBin, []string{"-version"}},
		{dovecotBin, []string{"--version"}},
	} {
		text, err := exec.Command(b.bin.path, b.args...).CombinedOutput()
		line := strings.TrimSpace(firstLine(string(text), b.bin.stack))
		if err != nil && line == "" {
			line = fmt.Sprintf("not installed (%s)", b.bin.pkg)
		}
		out[b.bin.stack] = line
	}
	return out
}

// firstLine returns the first line of s that names the stack (stunnel
// prints a banner line first), else the first line.
func firstLine(s, stack string) string {
	lines := strings.Split(s, "\n")
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), stack) || strings.Contains(l, "OpenSSL") {
			return l
		}
	}
	return lines[0]
}
