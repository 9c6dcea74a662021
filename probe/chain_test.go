package probe

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

func hasProblem(cr ChainReport, kind string) *ChainProblem {
	for i := range cr.Problems {
		if cr.Problems[i].Kind == kind {
			return &cr.Problems[i]
		}
	}
	return nil
}

func TestInspectChain(t *testing.T) {
	pki := testlab.NewPKI(t)
	cases := []struct {
		scenario string
		problem  string
		certs    int
		paths    bool
		check    func(t *testing.T, cr ChainReport)
	}{
		{testlab.ScenarioValid, "", 2, true, func(t *testing.T, cr ChainReport) {
			p := cr.VerifiedPaths[0]
			if len(p) != 3 || p[0].Source != "served" || p[1].Source != "served" || p[2].Source != "trust_store" || *p[1].ServedIndex != 1 {
				t.Errorf("path %+v", p)
			}
			c := cr.Certificates[1]
			if !c.IsCA || c.SHA256 == "" || c.PEM != "" || c.Subject != "CN=tlswatch Test Intermediate CA,O=tlswatch lab" {
				t.Errorf("intermediate %+v", c)
			}
		}},
		{testlab.ScenarioMissingIntermediate, testlab.ScenarioMissingIntermediate, 1, true, func(t *testing.T, cr ChainReport) {
			if len(cr.AIAFetched) != 1 || cr.AIAFetched[0].Error != "" || !strings.Contains(cr.AIAFetched[0].Subject, "Intermediate") {
				t.Errorf("aia %+v", cr.AIAFetched)
			}
			if !cr.VerifiedViaAIA || cr.VerifiedPaths[0][1].Source != "aia" || cr.Chain.Complete || cr.Trusted {
				t.Errorf("via aia %v path %+v complete %v", cr.VerifiedViaAIA, cr.VerifiedPaths, cr.Chain.Complete)
			}
			if p := hasProblem(cr, ProblemMissingIntermediate); !strings.Contains(p.Message, "AIA") {
				t.Errorf("problem %+v", p)
			}
		}},
		{testlab.ScenarioChainOrder, ProblemUnrelated, 3, true, nil},
		{testlab.ScenarioChainDuplicate, ProblemDuplicate, 3, true, nil},
		{testlab.ScenarioRootServed, ProblemRootServed, 3, true, nil},
		{testlab.ScenarioExpiredIntermediate, ProblemExpiredIntermediate, 2, false, nil},
		{testlab.ScenarioMissingDeadAIA, ProblemMissingIntermediate, 1, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			sc := testlab.Start(t, pki, tc.scenario)
			cr, err := InspectChain(context.Background(), labTarget(sc), labOptions(sc))
			if err != nil {
				t.Fatal(err)
			}
			if len(cr.Certificates) != tc.certs {
				t.Errorf("%d certificates, want %d", len(cr.Certificates), tc.certs)
			}
			if tc.problem != "" && hasProblem(cr, tc.problem) == nil {
				t.Errorf("no %s problem: %+v", tc.problem, cr.Problems)
			}
			if tc.problem == "" && len(cr.Problems) != 0 {
				t.Errorf("problems %+v", cr.Problems)
			}
			if (len(cr.VerifiedPaths) > 0) != tc.paths {
				t.Errorf("verified paths %+v", cr.VerifiedPaths)
			}
			if tc.check != nil {
				tc.check(t, cr)
			}
		})
	}
}

func TestInspectChainOutOfOrder(t *testing.T) {
	pki := testlab.NewPKI(t)
	// leaf <- int2 <- int1 <- root, served as leaf, int1, int2.
	int2 := pki.NewIntermediate(pki.Intermediate, testlab.CAOpts{CommonName: "tlswatch Second-level CA"})
	cert := pki.Leaf(testlab.LeafOpts{Issuer: int2, Chain: []*x509.Certificate{pki.Intermediate.Cert, int2.Cert}})
	sc := testlab.StartWith(t, pki, cert, nil)
	cr, err := InspectChain(context.Background(), labTarget(sc), labOptions(sc))
	if err != nil {
		t.Fatal(err)
	}
	if hasProblem(cr, ProblemOutOfOrder) == nil {
		t.Errorf("problems %+v", cr.Problems)
	}
	// int1 (#2) issued int2 (#3) and is served before it.
	if f, ok := findingsOf(cr.Report)[CodeChainOrder]; !ok || !strings.Contains(f.Message, "#2 (tlswatch Test Intermediate CA) comes before #3") {
		t.Errorf("findings %v", cr.Findings)
	}
	if !cr.Trusted {
		t.Errorf("Go clients reorder: still trusted, got %v", cr.Findings)
	}
}

func TestInspectChainJSON(t *testing.T) {
	pki := testlab.NewPKI(t)
	sc := testlab.Start(t, pki, testlab.ScenarioValid)
	opts := labOptions(sc)
	opts.IncludePEM = true
	cr, err := InspectChain(context.Background(), labTarget(sc), opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cr)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"status", "findings", "leaf", "chain", "certificates", "problems", "verified_paths", "aia_fetched", "tls", "timing_ms"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if !strings.Contains(cr.Certificates[0].PEM, "BEGIN CERTIFICATE") {
		t.Error("include_pem did not add PEM")
	}
}

func TestAnalyzePEM(t *testing.T) {
	pki := testlab.NewPKI(t)
	ctx := context.Background()
	opts := Options{Now: pki.Now, Roots: pki.Roots(), NoAIA: true}

	full := pki.Leaf(testlab.LeafOpts{})
	cr, err := AnalyzePEM(ctx, testlab.ChainPEM(full), testlab.DefaultHost, opts)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Status != StatusOK || !cr.Trusted || len(cr.Certificates) != 2 || len(cr.VerifiedPaths) != 1 {
		t.Errorf("valid chain: status %s trusted %v findings %v", cr.Status, cr.Trusted, cr.Findings)
	}

	cr, err = AnalyzePEM(ctx, testlab.ChainPEM(full), "other.test", opts)
	if err != nil || findingsOf(cr.Report)[CodeHostnameMismatch].Code == "" || cr.Status != StatusCritical {
		t.Errorf("host check: %v %v %s", err, cr.Findings, cr.Status)
	}

	expired := pki.Leaf(testlab.LeafOpts{NotAfter: pki.Now.Add(-48 * 3600e9), NotBefore: pki.Now.Add(-90 * 24 * 3600e9)})
	cr, _ = AnalyzePEM(ctx, testlab.EncodePEM(expired.Leaf), "", opts)
	// Its issuer, named an intermediate, is not pasted: incomplete.
	if cr.Leaf.DaysRemaining != -2 || findingsOf(cr.Report)[CodeExpired].Code == "" || findingsOf(cr.Report)[CodeIncompleteChain].Code == "" {
		t.Errorf("expired lone leaf: %+v %v", cr.Leaf, codesOf(cr.Report))
	}

	sha1 := pki.Leaf(testlab.LeafOpts{SignatureAlgorithm: x509.ECDSAWithSHA1})
	cr, _ = AnalyzePEM(ctx, testlab.ChainPEM(sha1), "", opts)
	if findingsOf(cr.Report)[CodeWeakSignature].Code == "" {
		t.Errorf("sha1: %v", codesOf(cr.Report))
	}

	// The root's own SHA-1 self-signature would not count; nor does a
	// trusted root pasted at the end of a chain make it untrusted.
	withRoot := testlab.ChainPEM(full) + pki.Root.PEM()
	cr, _ = AnalyzePEM(ctx, withRoot, "", opts)
	if cr.Status != StatusOK || findingsOf(cr.Report)[CodeRootInChain].Code == "" {
		t.Errorf("with root: %s %v", cr.Status, codesOf(cr.Report))
	}

	bad := []struct{ in, reason string }{
		{"", "required"},
		{"hello world", "no -----BEGIN CERTIFICATE"},
		{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse"},
		{"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "private key"},
		{"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a CERTIFICATE"},
		{strings.Repeat(pki.Root.PEM(), 33), "more than"},
		{strings.Repeat("x", maxPEMBytes+1), "too large"},
	}
	for _, b := range bad {
		_, err := AnalyzePEM(ctx, b.in, "", opts)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "pem" || !strings.Contains(fe.Reason, b.reason) {
			t.Errorf("input %.40q: %v, want pem error with %q", b.in, err, b.reason)
		}
	}
}

func TestAIAForms(t *testing.T) {
	pki := testlab.NewPKI(t)
	ctx := context.Background()
	var hits atomic.Int64
	for _, tc := range []struct {
		name string
		url  string
		want string // finding code
		msg  string
	}{
		{"pem", testlab.ServeAIAPEM(t, pki.Intermediate.Cert, &hits), CodeIncompleteChain, "AIA can supply"},
		{"garbage", testlab.ServeAIABytes(t, []byte("<html>not a cert</html>"), "text/html", &hits), CodeIncompleteChain, "likely"},
		{"oversize", testlab.ServeAIABytes(t, make([]byte, 2<<20), "application/octet-stream", &hits), CodeIncompleteChain, "larger than"},
		{"refused", "http://" + testlab.RefusedAddr(t) + "/issuer.crt", CodeIncompleteChain, "failed"},
		{"untrusted", testlab.ServeAIA(t, pki.UntrustedIntermediate.Cert, &hits), CodeUntrustedRoot, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issuer := pki.Intermediate
			if tc.name == "untrusted" {
				issuer = pki.UntrustedIntermediate
			}
			leaf := pki.Leaf(testlab.LeafOpts{Issuer: issuer, AIAURL: tc.url, Chain: []*x509.Certificate{}})
			cr, err := AnalyzePEM(ctx, testlab.ChainPEM(leaf), "", Options{Now: pki.Now, Roots: pki.Roots()})
			if err != nil {
				t.Fatal(err)
			}
			f, ok := findingsOf(cr.Report)[tc.want]
			if !ok || !strings.Contains(f.Message, tc.msg) {
				t.Errorf("findings %v; want %s with %q", cr.Findings, tc.want, tc.msg)
			}
		})
	}
}

func TestParseCertBundlePKCS7(t *testing.T) {
	pki := testlab.NewPKI(t)
	p7 := buildCertsOnlyPKCS7(t, pki.Intermediate.Cert, pki.Root.Cert)
	certs, err := parseCertBundle(p7)
	if err != nil || len(certs) != 2 || !certs[0].Equal(pki.Intermediate.Cert) {
		t.Fatalf("pkcs7: %d certs, %v", len(certs), err)
	}
}

// buildCertsOnlyPKCS7 makes a degenerate SignedData (.p7c), as some CAs
// publish their intermediates.
func buildCertsOnlyPKCS7(t *testing.T, certs ...*x509.Certificate) []byte {
	t.Helper()
	var raw []byte
	for _, c := range certs {
		raw = append(raw, c.Raw...)
	}
	type contentInfo struct {
		ContentType asn1.ObjectIdentifier
	}
	sd := struct {
		Version     int
		DigestAlgs  asn1.RawValue
		ContentInfo contentInfo
		Certs       asn1.RawValue
		SignerInfos asn1.RawValue
	}{
		Version:     1,
		DigestAlgs:  asn1.RawValue{Tag: asn1.TagSet, IsCompound: true},
		ContentInfo: contentInfo{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}},
		Certs:       asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: raw},
		SignerInfos: asn1.RawValue{Tag: asn1.TagSet, IsCompound: true},
	}
	sdDER, err := asn1.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sdDER}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWeakSignatureIgnoresRootSelfSignature(t *testing.T) {
	pki := testlab.NewPKI(t)
	oldRoot := pki.NewRootWith(testlab.CAOpts{CommonName: "tlswatch SHA-1 Root", SignatureAlgorithm: x509.ECDSAWithSHA1})
	if oldRoot.Cert.SignatureAlgorithm != x509.ECDSAWithSHA1 {
		t.Fatalf("root signed with %v", oldRoot.Cert.SignatureAlgorithm)
	}
	inter := pki.NewIntermediate(oldRoot, testlab.CAOpts{CommonName: "tlswatch Under SHA-1 Root"})
	leaf := pki.Leaf(testlab.LeafOpts{Issuer: inter, Chain: []*x509.Certificate{inter.Cert, oldRoot.Cert}})
	roots := x509.NewCertPool()
	roots.AddCert(oldRoot.Cert)
	cr, err := AnalyzePEM(context.Background(), testlab.ChainPEM(leaf), testlab.DefaultHost, Options{Now: pki.Now, Roots: roots, NoAIA: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := findingsOf(cr.Report)[CodeWeakSignature]; ok || !cr.Trusted {
		t.Errorf("trusted %v findings %v", cr.Trusted, cr.Findings)
	}
	if _, ok := findingsOf(cr.Report)[CodeRootInChain]; !ok {
		t.Errorf("served SHA-1 root not seen as a root: %v", codesOf(cr.Report))
	}
}
