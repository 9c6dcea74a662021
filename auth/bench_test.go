package auth

import (
	"context"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tlswatch/tlswatch/internal/testidp"
)

// What a request pays for OAuth once the issuer's keys are cached: parsing,
// one signature verification and the claim checks.
func BenchmarkVerifyJWT(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
		b.Run(string(alg), func(b *testing.B) {
			r := newRig(b, testidp.Options{}, nil)
			tok := r.idp.Sign(r.idp.Claims("alice", testResource, ScopeRead), testidp.SignOptions{Alg: alg})
			ctx := context.Background()
			if _, err := r.rs.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := r.rs.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The scope check reads a tools/call body once more before mcp-go does.
func BenchmarkNeededScope(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"scan_endpoints","arguments":{"targets":["` +
		strings.Repeat(`example.com:443","`, 200) + `x"]}}}`)
	scopes := map[string]string{"scan_endpoints": ScopeRead}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if neededScope(body, scopes) != ScopeRead {
			b.Fatal("wrong scope")
		}
	}
}
