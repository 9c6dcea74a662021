//go:build race

package e2e

// Under -race the binary is built with the race detector too, so a race in
// the server fails the HTTP tests (a raced process exits non-zero).
func init() { buildFlags = append(buildFlags, "-race") }
