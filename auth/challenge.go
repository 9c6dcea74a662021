package auth

import (
	"net/http"
	"strings"
)

// challenge is one RFC 6750 "Bearer" WWW-Authenticate challenge, with the
// MCP authorization specification's resource_metadata parameter (RFC 9728)
// and the scope the request needs.
type challenge struct {
	realm            string
	err              string // invalid_token, insufficient_scope; empty when no token was sent
	desc             string // a fixed human phrase, never derived from the token
	scope            string
	resourceMetadata string
}

func (c challenge) String() string {
	var params []string
	add := func(k, v string) {
		if v != "" {
			params = append(params, k+`="`+quoteSafe(v)+`"`)
		}
	}
	add("realm", c.realm)
	add("error", c.err)
	add("error_description", c.desc)
	add("scope", c.scope)
	add("resource_metadata", c.resourceMetadata)
	return "Bearer " + strings.Join(params, ", ")
}

// quoteSafe drops what cannot appear in a quoted-string as is (RFC 6750
// restricts error_description to printable ASCII without '"' and '\').
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// write sends the challenge with status and a one-line plain-text body.
func (c challenge) write(w http.ResponseWriter, status int, body string) {
	w.Header().Set("WWW-Authenticate", c.String())
	http.Error(w, body, status)
}
