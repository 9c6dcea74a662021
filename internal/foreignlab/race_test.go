//go:build race

package foreignlab_test

func init() { buildFlags = append(buildFlags, "-race") }
