package mcpcheck

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlswatch/tlswatch/probe"
)

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "file-token-value\n")
	t.Setenv("TLSWATCH_TEST_MCP_TOKEN", "env-token-value")
	t.Setenv("TLSWATCH_TEST_EMPTY", "")

	got, err := LoadTokens([]string{"prod=TLSWATCH_TEST_MCP_TOKEN", "staging=@" + good})
	if err != nil {
		t.Fatal(err)
	}
	if got["prod"] != "env-token-value" || got["staging"] != "file-token-value" || len(got) != 2 {
		t.Errorf("tokens %v", got)
	}

	for _, tc := range []struct {
		name, spec, want string
	}{
		{"no equals", "prod", "want NAME=ENV_VAR"},
		{"empty source", "prod=", "want NAME=ENV_VAR"},
		{"bad name", "a b=X", "letters, digits"},
		{"unset variable", "prod=TLSWATCH_TEST_UNSET_VAR", "TLSWATCH_TEST_UNSET_VAR is not set"},
		{"empty variable", "prod=TLSWATCH_TEST_EMPTY", "not set or empty"},
		{"missing file", "prod=@" + filepath.Join(dir, "nope"), "no such file"},
		{"empty file", "prod=@" + write("empty", "\n\n"), "is empty"},
		{"two lines", "prod=@" + write("two", "line-one-secret\nline-two-secret\n"), "white space"},
		{"huge file", "prod=@" + write("huge", strings.Repeat("a", 70<<10)), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadTokens([]string{tc.spec})
			var fe *probe.FieldError
			if !errors.As(err, &fe) || fe.Field != "mcp-token" || !strings.Contains(fe.Reason, tc.want) {
				t.Fatalf("err %v, want mcp-token: …%s…", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
	if _, err := LoadTokens([]string{"a=TLSWATCH_TEST_MCP_TOKEN", "a=@" + good}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate: %v", err)
	}
}
