package redact

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// benchDoc is a JSON list shaped like list_watches: n watches with a
// Report each, about 1.2 KB per watch.
func benchDoc(n int) []byte {
	type w struct {
		ID, Target, Subject, Issuer, Message string
		SANs                                 []string
	}
	ws := make([]w, n)
	for i := range ws {
		ws[i] = w{fmt.Sprintf("w_%08d", i), fmt.Sprintf("host-%d.example.com:443", i), "CN=host.example.com,O=Example Corp",
			"CN=Example Intermediate CA G2,O=Example Trust Services", "the certificate expires in 41 days (on 2027-01-06): renew it before then; automatic renewal should have run by now",
			[]string{"host.example.com", "www.host.example.com", "api.host.example.com"}}
	}
	b, _ := json.Marshal(map[string]any{"watches": ws})
	return b
}

// operatorSet has the secrets of a typical operator: a --token, two MCP
// tokens, one EC and one RSA client key.
func operatorSet(b *testing.B) *Set {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	return New("serve-token-8b2f0d5e3a61c7", "mcp-prod-4c1e9a7b2d0f11", "mcp-staging-77aa0b1c2d3e").
		WithMaterial(KeyMaterial(ec)...).WithMaterial(KeyMaterial(rk)...)
}

// BenchmarkRedactLargeResult: the cost the redaction pass adds to a large
// tool result (a fleet-wide list of 10,000 watches, 3.7 MB of JSON).
func BenchmarkRedactLargeResult(b *testing.B) {
	s := operatorSet(b)
	doc := benchDoc(10000)
	b.SetBytes(int64(len(doc)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Bytes(doc)
	}
}

// BenchmarkRedactReplacerBaseline: the same patterns through
// strings.Replacer, which the matcher replaces.
func BenchmarkRedactReplacerBaseline(b *testing.B) {
	s := operatorSet(b)
	var pairs []string
	for _, ps := range s.m.byPrefix {
		for _, p := range ps {
			pairs = append(pairs, p, Mask)
		}
	}
	r := strings.NewReplacer(pairs...)
	doc := string(benchDoc(10000))
	b.SetBytes(int64(len(doc)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Replace(doc)
	}
}
