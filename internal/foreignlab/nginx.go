package foreignlab

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Nginx configures an nginx (nginx-light) server: one server block for the
// default host, and one per VHost chosen by SNI.
type Nginx struct {
	TLS            // the default server: clients without SNI or with an unknown name get it
	HTTP2  bool    // listen ... http2 (ALPN h2 and http/1.1)
	VHosts []VHost // name-based virtual hosts
	Plain  bool    // plain HTTP on the port, no TLS at all (TLS is ignored)
}

// VHost is a name-based virtual host: its certificate is served to clients
// that send Name as SNI.
type VHost struct {
	Name string
	Cert TLS
}

// StartNginx runs nginx in the foreground as a single process, with its
// prefix, pid file, logs and temp paths in a directory of its own.
func StartNginx(t testing.TB, cfg Nginx) *Server {
	t.Helper()
	if len(cfg.ALPN) > 0 {
		t.Fatalf("foreignlab: nginx negotiates ALPN by itself: set HTTP2 instead of ALPN")
	}
	dir := newDir(t, "nginx")
	var blocks []func(port int) string
	if cfg.Plain {
		blocks = append(blocks, func(port int) string {
			return fmt.Sprintf("  server {\n    listen 127.0.0.1:%d default_server;\n    location / { return 200 \"plain\\n\"; }\n  }\n", port)
		})
	} else {
		def := cfg.TLS.write(t, dir, "default-")
		blocks = append(blocks, func(port int) string { return nginxServer(port, "_", true, cfg.HTTP2, &cfg.TLS, def) })
		for i, vh := range cfg.VHosts {
			vh := vh
			f := vh.Cert.write(t, dir, fmt.Sprintf("vhost%d-", i))
			blocks = append(blocks, func(port int) string { return nginxServer(port, vh.Name, false, cfg.HTTP2, &vh.Cert, f) })
		}
	}
	errorLog := filepath.Join(dir, "error.log")
	conf := filepath.Join(dir, "nginx.conf")
	return start(t, nginxBin, dir, func(port int) (launch, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s;\nerror_log %s info;\n",
			filepath.Join(dir, "nginx.pid"), errorLog)
		b.WriteString("events { worker_connections 512; }\nhttp {\n  access_log off;\n")
		for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
			fmt.Fprintf(&b, "  %s_temp_path %s;\n", p, filepath.Join(dir, p+"_temp"))
		}
		for _, blk := range blocks {
			b.WriteString(blk(port))
		}
		b.WriteString("}\n")
		writeFile(t, conf, []byte(b.String()))
		return launch{
			args:     []string{"-p", dir + "/", "-c", conf, "-e", errorLog},
			logFiles: []string{errorLog, conf},
		}, nil
	})
}

// nginxServer renders one TLS server block.
func nginxServer(port int, name string, isDefault, http2 bool, c *TLS, f files) string {
	var b strings.Builder
	listen := fmt.Sprintf("127.0.0.1:%d ssl", port)
	if http2 {
		listen += " http2"
	}
	if isDefault {
		listen += " default_server"
	}
	fmt.Fprintf(&b, "  server {\n    listen %s;\n    server_name %s;\n", listen, name)
	fmt.Fprintf(&b, "    ssl_certificate %s;\n    ssl_certificate_key %s;\n", f.cert, f.key)
	if vs := c.versionsIn(); len(vs) > 0 {
		var names []string
		for _, v := range vs {
			names = append(names, openSSLVersion(v))
		}
		fmt.Fprintf(&b, "    ssl_protocols %s;\n", strings.Join(names, " "))
	}
	if c.Ciphers != "" {
		fmt.Fprintf(&b, "    ssl_ciphers %s;\n", c.Ciphers)
	}
	if f.dh != "" {
		fmt.Fprintf(&b, "    ssl_dhparam %s;\n", f.dh)
	}
	if f.staple != "" {
		// The issuer must be in the served chain: nginx looks for it
		// there before it staples.
		fmt.Fprintf(&b, "    ssl_stapling on;\n    ssl_stapling_file %s;\n", f.staple)
	}
	switch c.ClientAuth {
	case RequestClientCert:
		fmt.Fprintf(&b, "    ssl_verify_client optional;\n    ssl_verify_depth 4;\n    ssl_client_certificate %s;\n", f.clientCA)
	case RequireClientCert:
		fmt.Fprintf(&b, "    ssl_verify_client on;\n    ssl_verify_depth 4;\n    ssl_client_certificate %s;\n", f.clientCA)
	}
	b.WriteString("    location / { return 200 \"ok\\n\"; }\n  }\n")
	return b.String()
}
