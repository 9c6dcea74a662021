package foreignlab

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// StartStunnel runs stunnel4 as a TLS terminator in front of a plain HTTP
// backend on loopback (the way it is deployed in front of services that
// speak no TLS). A backend is needed: stunnel resets the client's
// connection when it cannot reach one.
func StartStunnel(t testing.TB, cfg TLS) *Server {
	t.Helper()
	if len(cfg.OCSPStaple) > 0 || len(cfg.ALPN) > 0 || len(cfg.DHParams) > 0 {
		t.Fatalf("foreignlab: the stunnel lab supports certificates, versions, ciphers and client certificates only")
	}
	dir := newDir(t, "stunnel")
	f := cfg.write(t, dir, "")
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	t.Cleanup(backend.Close)
	conf := filepath.Join(dir, "stunnel.conf")
	return start(t, stunnelBin, dir, func(port int) (launch, error) {
		var b strings.Builder
		// pid = (empty): no pid file, so nothing is written under /run.
		b.WriteString("foreground = yes\npid =\ndebug = info\nsyslog = no\n\n[lab]\n")
		fmt.Fprintf(&b, "accept = 127.0.0.1:%d\nconnect = %s\n", port, backend.Listener.Addr())
		fmt.Fprintf(&b, "cert = %s\nkey = %s\n", f.cert, f.key)
		if vs := cfg.versionsIn(); len(vs) > 0 {
			fmt.Fprintf(&b, "sslVersionMin = %s\nsslVersionMax = %s\n", openSSLVersion(vs[0]), openSSLVersion(vs[len(vs)-1]))
			for _, v := range gaps(vs) {
				fmt.Fprintf(&b, "options = NO_%s\n", strings.ReplaceAll(openSSLVersion(v), ".", "_"))
			}
		}
		if cfg.Ciphers != "" {
			fmt.Fprintf(&b, "ciphers = %s\n", cfg.Ciphers)
		}
		switch cfg.ClientAuth {
		case RequestClientCert:
			fmt.Fprintf(&b, "CAfile = %s\nverifyChain = yes\nrequireCert = no\n", f.clientCA)
		case RequireClientCert:
			fmt.Fprintf(&b, "CAfile = %s\nverifyChain = yes\nrequireCert = yes\n", f.clientCA)
		}
		writeFile(t, conf, []byte(b.String()))
		return launch{args: []string{conf}, logFiles: []string{conf}}, nil
	})
}
