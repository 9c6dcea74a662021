package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
	"golang.org/x/crypto/ocsp"
)

// Run-level tests of the deep diagnostics: the same probe an agent gets,
// against real loopback servers.

func deepRun(t *testing.T, tgt Target, opts Options) Report {
	t.Helper()
	if tgt.Timeout == 0 {
		tgt.Timeout = 8 * time.Second
	}
	r, err := Run(context.Background(), tgt, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

func addrTarget(t *testing.T, addr string) Target {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return Target{Host: testlab.DefaultHost, SNI: testlab.DefaultHost, Port: p, IP: host}
}

func wantFinding(t *testing.T, r Report, code string, sev Severity) {
	t.Helper()
	for _, f := range r.Findings {
		if f.Code == code {
			if f.Severity != sev {
				t.Errorf("%s has severity %s, want %s", code, f.Severity, sev)
			}
			return
		}
	}
	t.Errorf("no %s finding in %v", code, findingCodes(r.Findings))
}

func TestDeepRunRevoked(t *testing.T) {
	pki := testlab.NewPKI(t)
	url := pki.ServeOCSP(pki.Intermediate, testlab.OCSPRevoked, nil)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{OCSPURL: url})}})
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots()})
	wantFinding(t, r, CodeRevoked, SeverityCritical)
	if r.Status != StatusCritical || r.Revocation == nil || r.Revocation.Status != RevStatusRevoked {
		t.Errorf("status %s revocation %+v", r.Status, r.Revocation)
	}
}

func TestDeepRunOCSPHangs(t *testing.T) {
	pki := testlab.NewPKI(t)
	url := pki.ServeOCSP(pki.Intermediate, testlab.OCSPHang, nil)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{OCSPURL: url})}})
	start := time.Now()
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots(), RevocationTimeout: 500 * time.Millisecond})
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("probe took %v with a hanging responder", el)
	}
	wantFinding(t, r, CodeOCSPUnavailable, SeverityWarning)
	if r.Status != StatusWarning || r.Revocation.Status == RevStatusGood {
		t.Errorf("status %s revocation %+v", r.Status, r.Revocation)
	}
}

func TestDeepRunStapledGood(t *testing.T) {
	pki := testlab.NewPKI(t)
	url := pki.ServeOCSP(pki.Intermediate, testlab.OCSPGood, nil)
	cert := pki.Leaf(testlab.LeafOpts{OCSPURL: url, MustStaple: true})
	cert.OCSPStaple = pki.OCSPResponse(cert.Leaf, pki.Intermediate, ocsp.Good)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots()})
	if r.TLS == nil || !r.TLS.OCSPStapled {
		t.Errorf("tls.ocsp_stapled false: %+v", r.TLS)
	}
	if r.Revocation == nil || r.Revocation.Method != RevMethodStaple || r.Revocation.Status != RevStatusGood {
		t.Errorf("revocation %+v", r.Revocation)
	}
	if r.Status != StatusOK || hasCode(r.Findings, CodeNoOCSPStaple) || hasCode(r.Findings, CodeMustStapleMissing) {
		t.Errorf("status %s findings %v", r.Status, findingCodes(r.Findings))
	}
}

func TestDeepRunMustStapleMissing(t *testing.T) {
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{MustStaple: true})}})
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots()})
	wantFinding(t, r, CodeMustStapleMissing, SeverityCritical)
	if r.Status != StatusCritical {
		t.Errorf("status %s", r.Status)
	}
}

func TestDeepRunNoStaple(t *testing.T) {
	pki := testlab.NewPKI(t)
	url := pki.ServeOCSP(pki.Intermediate, testlab.OCSPGood, nil)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{OCSPURL: url})}})
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots()})
	wantFinding(t, r, CodeNoOCSPStaple, SeverityInfo)
	if r.Status != StatusOK || r.Revocation.Status != RevStatusGood || r.Revocation.Method != RevMethodOCSP {
		t.Errorf("status %s revocation %+v", r.Status, r.Revocation)
	}
}

// fixedResolver answers every name with fixed addresses.
type fixedResolver []netip.Addr

func (f fixedResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f, nil
}

// listenPair listens on the same port on 127.0.0.1 and 127.0.0.2.
func listenPair(t *testing.T) (net.Listener, net.Listener) {
	t.Helper()
	for i := 0; i < 20; i++ {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
		if err == nil {
			return a, b
		}
		a.Close()
	}
	t.Skip("could not get the same port on 127.0.0.1 and 127.0.0.2")
	return nil, nil
}

func serveOn(t *testing.T, ln net.Listener, cert tls.Certificate) {
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	t.Cleanup(func() { tl.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
			}()
		}
	}()
}

func TestDeepRunInconsistentBackends(t *testing.T) {
	pki := testlab.NewPKI(t)
	a, b := listenPair(t)
	serveOn(t, a, pki.Leaf(testlab.LeafOpts{DNSNames: []string{"multi.test"}}))
	serveOn(t, b, pki.Leaf(testlab.LeafOpts{DNSNames: []string{"multi.test"}})) // same name, another certificate
	port := a.Addr().(*net.TCPAddr).Port
	res := fixedResolver{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	r := deepRun(t, Target{Host: "multi.test", SNI: "multi.test", Port: port}, Options{Now: pki.Now, Roots: pki.Roots(), Resolver: res})
	wantFinding(t, r, CodeInconsistentBackends, SeverityWarning)
	if len(r.Addresses) != 2 || r.Addresses[0].IP != "127.0.0.1" || r.Addresses[1].IP != "127.0.0.2" ||
		r.Addresses[0].SHA256 == r.Addresses[1].SHA256 || r.Addresses[1].SHA256 == "" {
		t.Errorf("addresses %+v", r.Addresses)
	}
	if r.Status != StatusWarning {
		t.Errorf("status %s", r.Status)
	}

	// The ip field pins one address: no fan-out.
	r = deepRun(t, Target{Host: "multi.test", SNI: "multi.test", Port: port, IP: "127.0.0.2"}, Options{Now: pki.Now, Roots: pki.Roots(), Resolver: res})
	if len(r.Addresses) != 0 || hasCode(r.Findings, CodeInconsistentBackends) {
		t.Errorf("pinned ip fanned out: %+v %v", r.Addresses, findingCodes(r.Findings))
	}
}

func TestDeepRunConsistentBackends(t *testing.T) {
	pki := testlab.NewPKI(t)
	a, b := listenPair(t)
	cert := pki.Leaf(testlab.LeafOpts{DNSNames: []string{"multi.test"}})
	serveOn(t, a, cert)
	serveOn(t, b, cert)
	port := a.Addr().(*net.TCPAddr).Port
	res := fixedResolver{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	r := deepRun(t, Target{Host: "multi.test", SNI: "multi.test", Port: port}, Options{Now: pki.Now, Roots: pki.Roots(), Resolver: res})
	if len(r.Addresses) != 2 || r.Status != StatusOK || hasCode(r.Findings, CodeInconsistentBackends) {
		t.Errorf("status %s addresses %+v findings %v", r.Status, r.Addresses, findingCodes(r.Findings))
	}
	// A dead backend of the same family is a finding.
	b.Close()
	r = deepRun(t, Target{Host: "multi.test", SNI: "multi.test", Port: port}, Options{Now: pki.Now, Roots: pki.Roots(), Resolver: res})
	wantFinding(t, r, CodeInconsistentBackends, SeverityWarning)
}

func TestBackendFindingsFamilies(t *testing.T) {
	// IPv6 side entirely down (a server bound to 127.0.0.1 behind
	// "localhost"): reported per address, not a finding.
	rs := []AddressResult{
		{IP: "127.0.0.1", Reachable: true, Trusted: true, SHA256: "aa"},
		{IP: "::1", Reachable: false, Codes: []string{CodeConnectionRefused}},
	}
	if fs := backendFindings(rs); len(fs) != 0 {
		t.Errorf("cross-family failure flagged: %v", findingCodes(fs))
	}
	rs = append(rs, AddressResult{IP: "127.0.0.2", Reachable: true, Trusted: false, SHA256: "aa"})
	if fs := backendFindings(rs); len(fs) != 1 || !strings.Contains(fs[0].Message, "trusted=false") {
		t.Errorf("trust difference: %v", fs)
	}
}

func TestDeepRunTrustedOnlyByCustomRoot(t *testing.T) {
	pki := testlab.NewPKI(t)
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}})
	sys, _ := SystemRoots()
	conf := sys.Clone()
	conf.AddCert(pki.Root.Cert)
	// Said (info: the operator chose the CA), and the status stays ok.
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: conf, CustomRoots: pki.Roots()})
	wantFinding(t, r, CodeUntrustedElsewhere, SeverityInfo)
	if !r.Trusted || r.Status != StatusOK || len(r.TrustStores) != 4 {
		t.Errorf("trusted %v status %s stores %+v", r.Trusted, r.Status, r.TrustStores)
	}
	// Without CustomRoots (the lab's own tests, a root installed on
	// purpose) there is nothing to compare: ok.
	r = deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots()})
	if r.Status != StatusOK || hasFinding(r, CodeUntrustedElsewhere) {
		t.Errorf("status %s findings %v", r.Status, findingCodes(r.Findings))
	}
}

func TestDeepRunClientCertExpiring(t *testing.T) {
	pki := testlab.NewPKI(t)
	client := pki.Leaf(testlab.LeafOpts{ClientAuth: true, CommonName: "agent-1",
		NotAfter: pki.Now.Add(5*24*time.Hour + time.Hour)})
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Roots()})
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots(), ClientCert: &client})
	wantFinding(t, r, CodeClientCertExpiring, SeverityCritical)
	if r.ClientCert == nil || r.ClientCert.DaysRemaining != 5 || !r.Reachable || !r.Trusted {
		t.Errorf("client cert %+v reachable %v trusted %v findings %v", r.ClientCert, r.Reachable, r.Trusted, findingCodes(r.Findings))
	}
}

func TestDeepRunStartTLSSMTP(t *testing.T) {
	pki := testlab.NewPKI(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{pki.Leaf(testlab.LeafOpts{})}}
	addr := serveStartTLS(t, cfg, smtpServer(true))
	_, port, _ := net.SplitHostPort(addr)
	tgt, err := ParseTarget("smtp://"+testlab.DefaultHost+":"+port, "127.0.0.1", "", 5000)
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Scheme != "smtp" {
		t.Fatalf("scheme %q", tgt.Scheme)
	}
	r := deepRun(t, tgt, Options{Now: pki.Now, Roots: pki.Roots(), Deep: true})
	if !r.Reachable || !r.Trusted || r.Status != StatusOK {
		t.Errorf("status %s findings %v", r.Status, findingCodes(r.Findings))
	}
	if len(r.CipherSuites) == 0 {
		t.Error("deep cipher enumeration did not get through STARTTLS")
	}

	// A server that does not offer STARTTLS.
	addr = serveStartTLS(t, cfg, smtpServer(false))
	_, port, _ = net.SplitHostPort(addr)
	tgt, _ = ParseTarget("smtp://"+testlab.DefaultHost+":"+port, "127.0.0.1", "", 5000)
	r = deepRun(t, tgt, Options{Now: pki.Now, Roots: pki.Roots()})
	wantFinding(t, r, CodeHandshakeFailed, SeverityCritical)
	if r.Status != StatusDown {
		t.Errorf("status %s", r.Status)
	}
}

func TestDeepRunDeepOption(t *testing.T) {
	pki := testlab.NewPKI(t)
	cert := pki.Leaf(testlab.LeafOpts{})
	addr := testlab.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	r := deepRun(t, addrTarget(t, addr), Options{Now: pki.Now, Roots: pki.Roots(), Deep: true})
	// Go's defaults accept ECDHE CBC-SHA suites: Mozilla's old profile, an
	// info that does not move the status.
	if r.Status != StatusOK || len(r.CipherSuites) == 0 || len(r.NotTested) == 0 || r.MozillaProfile != ProfileOld {
		t.Errorf("status %s findings %v ciphers %d not tested %v profile %q", r.Status, findingCodes(r.Findings), len(r.CipherSuites), r.NotTested, r.MozillaProfile)
	}
	wantFinding(t, r, CodeWeakCipher, SeverityInfo)
	if r.NoSNI == nil || !r.NoSNI.Reachable || !r.NoSNI.SameAsSNI || !r.NoSNI.MatchesHost {
		t.Errorf("no_sni %+v", r.NoSNI)
	}
	tested := map[string]bool{}
	for _, p := range r.Protocols {
		tested[p.Version] = p.Tested && !p.Accepted
	}
	if !tested["SSL 3.0"] || !tested["TLS 1.0"] || tested["SSL 2.0"] {
		t.Errorf("protocols %+v: want SSL 3.0 and TLS 1.0 tested and refused, SSL 2.0 untested", r.Protocols)
	}
}

// Without the deep scan, the suite the server chose still counts: a CBC
// suite for a client that offers AEAD is an info.
func TestRunNegotiatedCBC(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.StartWith(t, pki, pki.Leaf(testlab.LeafOpts{}), &tls.Config{MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	r := runLab(t, sc)
	wantFinding(t, r, CodeWeakCipher, SeverityInfo)
	if r.Status != StatusOK || !strings.Contains(findingsOf(r)[CodeWeakCipher].Message, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA") {
		t.Errorf("status %s findings %v", r.Status, r.Findings)
	}
	// An AEAD suite says nothing.
	if r := runLab(t, testlab.Start(t, pki, testlab.ScenarioValid)); hasFinding(r, CodeWeakCipher) {
		t.Errorf("weak_cipher on a modern server: %v", r.Findings)
	}
}

// DHE with a 1024-bit group and SSL 3.0 reach the Report of a deep probe:
// weak_dh, the DH size per suite, and deprecated_protocol naming SSL 3.0.
func TestDeepRunOpenSSLDHE(t *testing.T) {
	pki := testlab.NewPKI(t)
	dh1024 := filepath.Join(t.TempDir(), "dh1024.pem")
	if err := os.WriteFile(dh1024, []byte(oakleyGroup2PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := opensslServer(t, pki.Leaf(testlab.LeafOpts{Key: testlab.KeyRSA2048}), "-dhparam", dh1024,
		"-cipher", "ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:@SECLEVEL=0")
	r := deepRun(t, targetAt(t, addr), Options{Now: pki.Now, Roots: pki.Roots(), Deep: true})
	wantFinding(t, r, CodeWeakDH, SeverityWarning)
	if c := cipherOf(r.CipherSuites, "TLS 1.2", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"); c == nil || c.DHBits != 1024 {
		t.Errorf("DHE suite %+v", c)
	}
	if r.MozillaProfile != ProfileOld || r.Status != StatusWarning || !r.Trusted {
		t.Errorf("profile %q status %s trusted %v findings %v", r.MozillaProfile, r.Status, r.Trusted, r.Findings)
	}
}

// A failed plain handshake on a STARTTLS port says which scheme to use.
func TestStartTLSHintInFinding(t *testing.T) {
	p := newProbeRun(Target{Host: "mail.tlswatch.test", Port: 587}, Options{}.withDefaults())
	p.add(CodeNotTLS, "the peer answered, but not with TLS")
	p.addStartTLSHint()
	if m := p.report.Findings[0].Message; !strings.Contains(m, "smtp://mail.tlswatch.test:587") {
		t.Errorf("message %q", m)
	}
	p = newProbeRun(Target{Host: "mail.tlswatch.test", Port: 587, Scheme: "smtp"}, Options{}.withDefaults())
	p.add(CodeNotTLS, "x")
	p.addStartTLSHint()
	if m := p.report.Findings[0].Message; m != "x" {
		t.Errorf("hint although STARTTLS was used: %q", m)
	}
}

func hasFinding(r Report, code string) bool {
	for _, f := range r.Findings {
		if f.Code == code {
			return true
		}
	}
	return false
}
