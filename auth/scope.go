package auth

import (
	"bytes"
	"encoding/json"
	"strings"
)

// neededScope is the scope a JSON-RPC POST body needs: ScopeWrite when any
// message in it (one message or a batch) calls a tool that toolScopes does
// not mark ScopeRead, else ScopeRead. A body that does not parse needs
// ScopeRead: the server answers it with a parse error and runs nothing.
//
// Keys are matched case-insensitively and every candidate counts, so no
// spelling of "method" or "name" that a JSON decoder might pick differently
// can slip a write past the check.
func neededScope(body []byte, toolScopes map[string]string) string {
	body = bytes.TrimSpace(body)
	var msgs []json.RawMessage
	if len(body) > 0 && body[0] == '[' {
		if json.Unmarshal(body, &msgs) != nil {
			return ScopeRead
		}
	} else {
		msgs = []json.RawMessage{body}
	}
	for _, m := range msgs {
		if messageScope(m, toolScopes) == ScopeWrite {
			return ScopeWrite
		}
	}
	return ScopeRead
}

func messageScope(msg json.RawMessage, toolScopes map[string]string) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(msg, &fields) != nil {
		return ScopeRead
	}
	if !anyString(fields, "method", func(m string) bool { return m == "tools/call" }) {
		return ScopeRead
	}
	// Every params object of a tools/call, and every name in it.
	need := ScopeRead
	for k, v := range fields {
		if !strings.EqualFold(k, "params") {
			continue
		}
		var params map[string]json.RawMessage
		if json.Unmarshal(v, &params) != nil {
			continue
		}
		anyString(params, "name", func(name string) bool {
			if toolScopes[name] != ScopeRead {
				need = ScopeWrite
			}
			return false
		})
	}
	return need
}

// anyString reports whether any field named key (case-insensitively) holds
// a string for which pred is true.
func anyString(fields map[string]json.RawMessage, key string, pred func(string) bool) bool {
	for k, v := range fields {
		var s string
		if strings.EqualFold(k, key) && json.Unmarshal(v, &s) == nil && pred(s) {
			return true
		}
	}
	return false
}
