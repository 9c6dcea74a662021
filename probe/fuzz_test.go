package probe

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// Fuzz targets for everything an agent or a server can hand the engine:
// target strings, certificates (DER and PEM) and SCT lists. Seed corpora
// live under testdata/fuzz/<FuzzName>; run one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzParseTarget$' -fuzztime 10m -parallel 1 ./probe

var fieldNames = []string{"target", "ip", "sni", "timeout_ms"}

// FuzzParseTarget: every input is a *FieldError naming one of the target
// fields, or a Target that Run accepts and whose host:port parses back to
// itself.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []struct {
		target, ip, sni string
		ms              int
	}{
		{"mcp.example.com", "", "", 0},
		{"mcp.example.com:8443", "203.0.113.7", "", 3000},
		{"https://mcp.example.com/mcp", "", "", 60000},
		{"https://Bücher.example:443/x?y=1", "", "", 0},
		{"[2001:db8::1]:443", "", "", 0},
		{"2001:db8::1", "", "", 0},
		{"[::ffff:127.0.0.1]", "::ffff:10.0.0.1", "", 0},
		{"127.0.0.1:65535", "", "localhost", 1},
		{"smtp://mail.example.com", "", "", 0},
		{"http://x", "", "", 0},
		{"https://user:pw@x.example", "", "", 0},
		{"a..b", "", "", 0},
		{"host:0", "", "", -1},
		{"1.2.3", "", "", 70000},
		{"example.com./path", "", "sni.example.", 0},
		{"xn--bcher-kva.example", "", "", 0},
		{"[fe80::1%eth0]:443", "169.254.169.254", "", 0},
	} {
		f.Add(s.target, s.ip, s.sni, s.ms)
	}
	f.Fuzz(func(t *testing.T, target, ip, sni string, ms int) {
		tg, err := ParseTarget(target, ip, sni, ms)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !slices.Contains(fieldNames, fe.Field) || fe.Reason == "" {
				t.Fatalf("ParseTarget(%q, %q, %q, %d): error %T %v, want a *FieldError on a target field", target, ip, sni, ms, err, err)
			}
			return
		}
		if tg.Host == "" || tg.Host != strings.ToLower(tg.Host) || strings.ContainsAny(tg.Host, "[]/@ ") {
			t.Fatalf("ParseTarget(%q): host %q not normalised", target, tg.Host)
		}
		if tg.Port < 1 || tg.Port > 65535 || tg.Timeout <= 0 || tg.Timeout > MaxTimeout {
			t.Fatalf("ParseTarget(%q): port %d, timeout %v out of range", target, tg.Port, tg.Timeout)
		}
		if tg.IP != "" && !isIPLiteral(tg.IP) {
			t.Fatalf("ParseTarget(ip %q): IP %q is not an address", ip, tg.IP)
		}
		if isIPLiteral(tg.SNI) {
			t.Fatalf("ParseTarget(%q, sni %q): SNI %q is an IP literal", target, sni, tg.SNI)
		}
		again := tg
		if err := again.check(); err != nil {
			t.Fatalf("ParseTarget(%q) gave a Target that Run refuses: %v", target, err)
		}
		// Normalisation is idempotent: host:port parses back to itself.
		hp := net.JoinHostPort(tg.Host, strconv.Itoa(tg.Port))
		tg2, err := ParseTarget(hp, tg.IP, tg.SNI, int(tg.Timeout/time.Millisecond))
		if err != nil {
			t.Fatalf("ParseTarget(%q) -> %q does not parse again: %v", target, hp, err)
		}
		if tg2.Host != tg.Host || tg2.Port != tg.Port || tg2.SNI != tg.SNI || tg2.IP != tg.IP {
			t.Fatalf("ParseTarget(%q) not idempotent: %+v then %+v", target, tg, tg2)
		}
	})
}

// refuseAll is a dial Control for fuzzing: certificate analysis must never
// open a connection (AIA is off, but be sure).
func refuseAll(network, address string, _ syscall.RawConn) error {
	return errors.New("fuzz: no dialling")
}

// FuzzAnalyzeDER: arbitrary bytes as DER (one certificate or several
// concatenated, a served chain) and as pasted PEM never panic, always
// marshal to JSON, and yield only findings from the code table.
func FuzzAnalyzeDER(f *testing.F) {
	pki := testlab.NewPKI(f)
	valid := pki.Leaf(testlab.LeafOpts{})
	rich := pki.Leaf(testlab.LeafOpts{
		DNSNames: []string{"a.example", "*.b.example"}, IPs: []net.IP{net.ParseIP("192.0.2.1")},
		AIAURL: "http://aia.invalid/ca.crt", OCSPURL: "http://ocsp.invalid", CRLURL: "http://crl.invalid/ca.crl",
		MustStaple: true, Key: testlab.KeyRSA2048,
	})
	cnOnly := pki.Leaf(testlab.LeafOpts{NoSAN: true, SelfSigned: true})
	sha1 := pki.Leaf(testlab.LeafOpts{SignatureAlgorithm: x509.SHA1WithRSA, Issuer: pki.Intermediate})
	for _, c := range []struct {
		der  []byte
		host string
	}{
		{valid.Certificate[0], testlab.DefaultHost},
		{concat(valid.Certificate...), testlab.DefaultHost},
		{concat(append(valid.Certificate, pki.Root.DER())...), ""},
		{rich.Certificate[0], "x.b.example"},
		{cnOnly.Certificate[0], ""},
		{sha1.Certificate[0], "192.0.2.1"},
		{pki.Root.DER(), ""},
		{[]byte(testlab.ChainPEM(valid)), testlab.DefaultHost},
		{[]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), ""},
		{[]byte{0x30, 0x82, 0x01, 0x00}, ""},
	} {
		f.Add(c.der, c.host)
	}
	opts := Options{Now: pki.Now, Roots: pki.Roots(), NoAIA: true, NoRevocation: true, Control: refuseAll}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte, host string) {
		if certs, err := x509.ParseCertificates(data); err == nil && len(certs) > 0 {
			for _, c := range certs {
				ci := *certInfo(c, pki.Now, true)
				if _, err := json.Marshal(ci); err != nil {
					t.Fatalf("certInfo does not marshal: %v", err)
				}
			}
			if len(certs) > maxPEMCerts {
				certs = certs[:maxPEMCerts]
			}
			checkPEMReport(t, ctx, testlab.EncodePEM(certs...), host, opts, len(certs))
		}
		checkPEMReport(t, ctx, string(data), host, opts, -1)
	})
}

func checkPEMReport(t *testing.T, ctx context.Context, pemText, host string, opts Options, want int) {
	t.Helper()
	cr, err := AnalyzePEM(ctx, pemText, host, opts)
	if err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) || (fe.Field != "pem" && fe.Field != "host") {
			t.Fatalf("AnalyzePEM: error %T %v, want a *FieldError on pem or host", err, err)
		}
		if want > 0 && fe.Field == "pem" {
			t.Fatalf("AnalyzePEM refused %d certificates that parse: %v", want, err)
		}
		return
	}
	if want > 0 && len(cr.Certificates) != want {
		t.Fatalf("AnalyzePEM: %d certificates in the report, %d given", len(cr.Certificates), want)
	}
	if cr.Leaf == nil || cr.Chain == nil {
		t.Fatalf("AnalyzePEM: report without leaf or chain: %+v", cr.Report)
	}
	for _, fd := range cr.Findings {
		ci, ok := Codes[fd.Code]
		if !ok || fd.Message == "" {
			t.Fatalf("AnalyzePEM: finding %+v not in the code table or without message", fd)
		}
		if ci.Severity != "" && ci.Severity != fd.Severity {
			t.Fatalf("AnalyzePEM: finding %s severity %s, table says %s", fd.Code, fd.Severity, ci.Severity)
		}
	}
	if _, err := json.Marshal(cr); err != nil {
		t.Fatalf("AnalyzePEM report does not marshal: %v", err)
	}
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// FuzzParseSCTList: SCT lists come from servers (TLS extension), from
// certificates and from OCSP staples; none may panic the parser or exceed
// the entry cap.
func FuzzParseSCTList(f *testing.F) {
	for _, n := range []int{0, 1, 3, maxSCTs + 1} {
		ext := testlab.SCTListExtension(oidSCTList, n)
		f.Add(ext.Value)
		var inner []byte
		if _, err := asn1.Unmarshal(ext.Value, &inner); err == nil {
			f.Add(inner)
		}
	}
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		raws, err := parseSCTList(b)
		if len(raws) > maxSCTs {
			t.Fatalf("parseSCTList returned %d entries, cap %d", len(raws), maxSCTs)
		}
		for _, r := range raws {
			if len(r) == 0 {
				t.Fatalf("parseSCTList returned an empty entry")
			}
			if s, perr := parseSCT(r, SCTSourceTLS); perr == nil && (s.Version != 1 || len(s.LogID) != 64) {
				t.Fatalf("parseSCT: %+v", s)
			}
		}
		_ = err
		scts, _ := sctsFromExtensionValue(b, SCTSourceCertificate)
		if len(scts) > maxSCTs {
			t.Fatalf("sctsFromExtensionValue returned %d SCTs", len(scts))
		}
	})
}
