package mcpcheck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
)

// maxTokenFile bounds a token file: a bearer token is a line, not a file
// that happens to be named by mistake.
const maxTokenFile = 64 << 10

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// LoadTokens reads the operator's named MCP tokens from specs of the form
// NAME=ENV_VAR (the token is that environment variable's value) or
// NAME=@/path/to/file (the file's content, surrounding white space
// trimmed). A tool call names a token, never carries it, so tokens do not
// pass through the model. Errors are *probe.FieldError for the field
// "mcp-token" and never contain a token.
func LoadTokens(specs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, spec := range specs {
		name, src, ok := strings.Cut(strings.TrimSpace(spec), "=")
		if !ok || name == "" || src == "" {
			return nil, tokenErr("%q: want NAME=ENV_VAR or NAME=@FILE", clip(spec, 80))
		}
		if !tokenNameRE.MatchString(name) {
			return nil, tokenErr("name %q: letters, digits, '.', '_' and '-', at most 64", clip(name, 80))
		}
		if _, dup := out[name]; dup {
			return nil, tokenErr("name %q given twice", name)
		}
		tok, err := readToken(src)
		if err != nil {
			return nil, tokenErr("%s: %v", name, err)
		}
		out[name] = tok
	}
	return out, nil
}

func tokenErr(format string, a ...any) error {
	return &probe.FieldError{Field: "mcp-token", Reason: fmt.Sprintf(format, a...)}
}

// readToken reads one token from $VAR or @file and checks that it can be
// sent in an Authorization header.
func readToken(src string) (string, error) {
	var tok string
	if path, ok := strings.CutPrefix(src, "@"); ok {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
		if err != nil {
			return "", fmt.Errorf("token file %s: %w", path, err)
		}
		if len(b) > maxTokenFile {
			return "", fmt.Errorf("token file %s is larger than %d KiB", path, maxTokenFile>>10)
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty", path)
		}
	} else {
		v, ok := os.LookupEnv(src)
		if !ok || strings.TrimSpace(v) == "" {
			return "", fmt.Errorf("environment variable %s is not set or empty", src)
		}
		tok = strings.TrimSpace(v)
	}
	for _, r := range tok {
		if r <= ' ' || r == 0x7f {
			return "", errors.New("the token contains white space or control characters (one line, as sent after \"Bearer \")")
		}
	}
	return tok, nil
}
