package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// What a server makes of client certificates, over TLS 1.2 (refusal inside
// the handshake) and TLS 1.3 (refusal after the client's Finished, seen
// only by reading): required or optional, with no certificate, one it
// accepts, or one from a CA it does not accept.
func TestRunClientCerts(t *testing.T) {
	pki := testlab.NewPKI(t)
	good := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-good"})
	bad := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-bad", Issuer: pki.UntrustedIntermediate})
	type want struct {
		status Status
		code   string // client_cert_required, client_cert_rejected, or "" for neither
		msg    string
	}
	cases := []struct {
		name   string
		auth   tls.ClientAuthType
		client *tls.Certificate
		want   want
	}{
		{"required/none", tls.RequireAndVerifyClientCert, nil, want{StatusOK, CodeClientCertRequired, "without one it refused the connection"}},
		{"required/accepted", tls.RequireAndVerifyClientCert, &good, want{StatusOK, CodeClientCertRequired, "accepted the one presented (CN=agent-good"}},
		{"required/refused", tls.RequireAndVerifyClientCert, &bad, want{StatusCritical, CodeClientCertRejected, "refused the client certificate presented (CN=agent-bad"}},
		{"optional/none", tls.VerifyClientCertIfGiven, nil, want{StatusOK, "", ""}},
		{"optional/accepted", tls.VerifyClientCertIfGiven, &good, want{StatusOK, "", ""}},
		{"optional/refused", tls.VerifyClientCertIfGiven, &bad, want{StatusCritical, CodeClientCertRejected, "CN=agent-bad"}},
		{"requested/none", tls.RequestClientCert, nil, want{StatusOK, "", ""}},
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tc := range cases {
			t.Run(tls.VersionName(v)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				sc := testlab.StartWith(t, pki, pki.Leaf(testlab.LeafOpts{}), &tls.Config{
					MinVersion: v, MaxVersion: v, ClientAuth: tc.auth, ClientCAs: pki.Roots()})
				opts := labOptions(sc)
				opts.ClientCert = tc.client
				r, err := Run(context.Background(), labTarget(sc), opts)
				if err != nil {
					t.Fatal(err)
				}
				got := findingsOf(r)
				if r.Status != tc.want.status || !r.Reachable || !r.Trusted {
					t.Errorf("status %s reachable %v trusted %v, want %s reachable trusted; findings %v",
						r.Status, r.Reachable, r.Trusted, tc.want.status, r.Findings)
				}
				for _, code := range []string{CodeClientCertRequired, CodeClientCertRejected} {
					f, ok := got[code]
					switch {
					case code == tc.want.code && !ok:
						t.Errorf("no %s: %v", code, r.Findings)
					case code == tc.want.code && !strings.Contains(f.Message, tc.want.msg):
						t.Errorf("%s message %q lacks %q", code, f.Message, tc.want.msg)
					case code != tc.want.code && ok:
						t.Errorf("unexpected %s: %s", code, f.Message)
					}
				}
				if tc.want.code == CodeClientCertRejected && v == tls.VersionTLS13 && !strings.Contains(got[tc.want.code].Message, "after the TLS 1.3 handshake") {
					t.Errorf("TLS 1.3 refusal not said to come after the handshake: %s", got[tc.want.code].Message)
				}
			})
		}
	}
}

// OpenSSL refuses a client certificate with its own alerts: "certificate
// required" without one, "unknown ca" for one from another CA; over TLS 1.3
// they come after the client's Finished, where curl sees them and a probe
// that does not read would call the server fine.
func TestOpenSSLClientCerts(t *testing.T) {
	pki := testlab.NewPKI(t)
	good := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-good"})
	bad := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-bad", Issuer: pki.UntrustedIntermediate})
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	writePEM(t, rootFile, "CERTIFICATE", pki.Root.Cert.Raw)
	cases := []struct {
		name   string
		client *tls.Certificate
		code   string
		msg    string
	}{
		{"none", nil, CodeClientCertRequired, "without one it refused the connection"},
		{"accepted", &good, CodeClientCertRequired, "accepted the one presented"},
		{"refused", &bad, CodeClientCertRejected, `"unknown certificate authority"`},
	}
	for _, version := range []string{"-tls1_2", "-tls1_3"} {
		addr := opensslServer(t, pki.Leaf(testlab.LeafOpts{}), version, "-Verify", "3", "-verify_return_error", "-CAfile", rootFile)
		for _, tc := range cases {
			t.Run(version+"/"+tc.name, func(t *testing.T) {
				opts := Options{Now: pki.Now, Roots: pki.Roots(), ClientCert: tc.client, NoLegacyProtocols: true}
				r, err := Run(context.Background(), targetAt(t, addr), opts)
				if err != nil {
					t.Fatal(err)
				}
				f, ok := findingsOf(r)[tc.code]
				if !ok || !strings.Contains(f.Message, tc.msg) || !r.Reachable || !r.Trusted {
					t.Errorf("reachable %v trusted %v, want %s with %q: %v", r.Reachable, r.Trusted, tc.code, tc.msg, r.Findings)
				}
			})
		}
	}
}

// nginx completes every TLS handshake whatever client certificate comes
// (ssl_verify_client on or optional) and refuses at the HTTP layer: "400
// No required SSL certificate was sent", "400 The SSL certificate error".
// This server answers the same way, over HTTP/1.1 and HTTP/2.
func TestRunClientCertsRefusedOverHTTP(t *testing.T) {
	pki := testlab.NewPKI(t)
	good := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-good"})
	bad := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-bad", Issuer: pki.UntrustedIntermediate})
	nginxLike := func(required bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			page := func(title string) {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, "<html>\r\n<head><title>400 %s</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>%s</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", title, title)
			}
			certs := r.TLS.PeerCertificates
			if len(certs) == 0 {
				if required {
					page("No required SSL certificate was sent")
					return
				}
				io.WriteString(w, "ok\n")
				return
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pki.Roots(), Intermediates: inter, CurrentTime: pki.Now,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				page("The SSL certificate error")
				return
			}
			io.WriteString(w, "ok\n")
		})
	}
	cases := []struct {
		name     string
		required bool
		client   *tls.Certificate
		code     string
		msg      string
	}{
		{"on/none", true, nil, CodeClientCertRequired, `the HTTP answer 400 "No required SSL certificate was sent"`},
		{"on/accepted", true, &good, CodeClientCertRequired, "accepted the one presented"},
		{"on/refused", true, &bad, CodeClientCertRejected, "The SSL certificate error"},
		{"optional/none", false, nil, "", ""},
		{"optional/refused", false, &bad, CodeClientCertRejected, "at the HTTP layer"},
	}
	for _, proto := range []string{"http/1.1", "h2"} {
		for _, tc := range cases {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				addr := testlab.ServeTLSHandler(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})},
					ClientAuth: tls.RequestClientCert, NextProtos: []string{proto}}, nginxLike(tc.required))
				r, err := Run(context.Background(), targetAt(t, addr), Options{Now: pki.Now, Roots: pki.Roots(), ClientCert: tc.client})
				if err != nil {
					t.Fatal(err)
				}
				if r.TLS == nil || r.TLS.ALPN != proto && !(proto == "http/1.1" && r.TLS.ALPN == "") {
					t.Errorf("tls %+v, want ALPN %s", r.TLS, proto)
				}
				got := findingsOf(r)
				for _, code := range []string{CodeClientCertRequired, CodeClientCertRejected} {
					f, ok := got[code]
					switch {
					case code == tc.code && (!ok || !strings.Contains(f.Message, tc.msg)):
						t.Errorf("want %s with %q: %v", code, tc.msg, r.Findings)
					case code != tc.code && ok:
						t.Errorf("unexpected %s: %s", code, f.Message)
					}
				}
			})
		}
	}
}
