package probe

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

// A chain whose next issuer is neither served, nor in the store, nor
// fetchable (no AIA): incomplete_chain when the evidence points at a
// missing intermediate (above all: one of the operator's --ca-file roots
// could have issued it), untrusted_root when it points at an unknown root,
// both only when nothing tells. The advice never asks for a root already
// given.
func TestRunUnseenIssuer(t *testing.T) {
	pki := testlab.NewPKI(t)
	corpRoot := pki.NewRootWith(testlab.CAOpts{CommonName: "Example Corp Root CA", Organization: "Example Corp"})
	corpIssuing := pki.NewIntermediate(corpRoot, testlab.CAOpts{CommonName: "Example Corp Issuing CA 1", Organization: "Example Corp"})
	corpNoOrg := pki.NewIntermediate(corpRoot, testlab.CAOpts{CommonName: "Example Corp Web", Organization: "-"})
	corpSub := pki.NewIntermediate(corpRoot, testlab.CAOpts{CommonName: "Example Corp Policy Sub CA", Organization: "Example Corp"})
	corpUnderSub := pki.NewIntermediate(corpSub, testlab.CAOpts{CommonName: "Example Corp Servers CA", Organization: "Example Corp"})
	otherRoot := pki.NewRootWith(testlab.CAOpts{CommonName: "Other Org Root CA", Organization: "Other Org"})
	otherNeutral := pki.NewIntermediate(otherRoot, testlab.CAOpts{CommonName: "Web Services CA", Organization: "Other Org"})
	otherInter := pki.NewIntermediate(otherRoot, testlab.CAOpts{CommonName: "Other Intermediate CA", Organization: "Other Org"})
	twin := pki.NewRootWith(testlab.CAOpts{CommonName: "Example Corp Root CA", Organization: "Example Corp"}) // same name, other key

	corpPool := x509.NewCertPool()
	corpPool.AddCert(corpRoot.Cert)
	lone := []*x509.Certificate{}
	cases := []struct {
		name    string
		issuer  *testlab.Authority
		chain   []*x509.Certificate
		custom  bool // corpRoot given with --ca-file
		codes   []string
		msg     string
		notInIt string
	}{
		{"corp intermediate missing, root given", corpIssuing, lone, true,
			[]string{CodeIncompleteChain}, "under your --ca-file root CN=Example Corp Root CA,O=Example Corp (same organization", "add"},
		{"corp intermediate without O, root given", corpNoOrg, lone, true,
			[]string{CodeIncompleteChain}, `both names say "example"`, "add"},
		{"second corp intermediate missing", corpUnderSub, []*x509.Certificate{corpUnderSub.Cert}, true,
			[]string{CodeIncompleteChain}, "no certificate of its issuer CN=Example Corp Policy Sub CA,O=Example Corp is served", "add"},
		{"other root, root given", otherRoot, lone, true,
			[]string{CodeUntrustedRoot}, "it is not one of your --ca-file roots", "add"},
		{"other neutral intermediate, root given", otherNeutral, lone, true,
			[]string{CodeIncompleteChain, CodeUntrustedRoot}, "cannot tell", "add"},
		{"same name other key", twin, lone, true,
			[]string{CodeUntrustedRoot}, "another CA of the same name", "add"},
		{"other intermediate, no roots given", otherInter, lone, false,
			[]string{CodeIncompleteChain}, "by its name, CN=Other Intermediate CA,O=Other Org is an intermediate CA", ""},
		{"other neutral issuer, no roots given", otherNeutral, lone, false,
			[]string{CodeUntrustedRoot}, "add its root with --ca-file", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := testlab.StartWith(t, pki, pki.Leaf(testlab.LeafOpts{Issuer: tc.issuer, Chain: tc.chain}), nil)
			opts := Options{Now: pki.Now, Roots: corpPool}
			if tc.custom {
				opts.CustomRoots = corpPool
			}
			r, err := Run(context.Background(), labTarget(sc), opts)
			if err != nil {
				t.Fatal(err)
			}
			got := findingsOf(r)
			var msgs []string
			for _, code := range []string{CodeIncompleteChain, CodeUntrustedRoot} {
				f, ok := got[code]
				want := strings.Contains(strings.Join(tc.codes, " "), code)
				if ok != want {
					t.Errorf("%s present %v, want %v; findings %v", code, ok, want, r.Findings)
				}
				if ok {
					msgs = append(msgs, f.Message)
				}
			}
			all := strings.Join(msgs, " | ")
			if !strings.Contains(all, tc.msg) {
				t.Errorf("messages %q lack %q", all, tc.msg)
			}
			if tc.notInIt != "" && strings.Contains(all, tc.notInIt) {
				t.Errorf("messages %q say %q to an operator who gave the root", all, tc.notInIt)
			}
		})
	}
}
