package testidp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func (i *IdP) routes() http.Handler {
	mux := http.NewServeMux()
	p := i.opts.Path
	switch i.opts.Discovery {
	case OAuth:
		mux.HandleFunc("GET /.well-known/oauth-authorization-server"+p, i.metadata)
	case OpenID:
		mux.HandleFunc("GET "+p+"/.well-known/openid-configuration", i.metadata)
	}
	mux.HandleFunc("GET "+p+"/jwks", i.jwks)
	mux.HandleFunc("POST "+p+"/token", i.token)
	mux.HandleFunc("POST "+p+"/introspect", i.introspect)
	mux.HandleFunc(p+"/authorize", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "only client_credentials here", http.StatusBadRequest)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (i *IdP) metadata(w http.ResponseWriter, r *http.Request) {
	i.hit("metadata")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.Issuer,
		"authorization_endpoint":                i.Issuer + "/authorize",
		"token_endpoint":                        i.Issuer + "/token",
		"jwks_uri":                              i.Issuer + "/jwks",
		"introspection_endpoint":                i.Issuer + "/introspect",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"tlswatch:read", "tlswatch:write"},
	})
}

func (i *IdP) jwks(w http.ResponseWriter, r *http.Request) {
	i.hit("jwks")
	i.mu.Lock()
	var set jose.JSONWebKeySet
	for _, k := range append(slices.Clone(i.keys), i.rsa) {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	i.mu.Unlock()
	writeJSON(w, http.StatusOK, set)
}

// clientAuth returns the client id and secret of a request:
// client_secret_basic (form-encoded parts) or client_secret_post.
func clientAuth(r *http.Request) (string, string) {
	if id, secret, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		return id, secret
	}
	return r.PostFormValue("client_id"), r.PostFormValue("client_secret")
}

func oauthError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code})
}

// token is the client_credentials grant: the token's audience is the
// RFC 8707 resource parameter, its scope what was asked (all the client's
// scopes when nothing was), refused when beyond what the client may have.
func (i *IdP) token(w http.ResponseWriter, r *http.Request) {
	i.hit("token")
	id, secret := clientAuth(r)
	c, ok := i.opts.Clients[id]
	if !ok || c.Secret != secret {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	if r.PostFormValue("grant_type") != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	scopes := strings.Fields(r.PostFormValue("scope"))
	if len(scopes) == 0 {
		scopes = c.Scopes
	}
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			oauthError(w, http.StatusBadRequest, "invalid_scope")
			return
		}
	}
	claims := i.Claims(id, r.PostFormValue("resource"), scopes...)
	tok := i.Sign(claims, SignOptions{})
	if i.opts.Opaque {
		tok = i.Opaque(claims)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok, "token_type": "Bearer",
		"expires_in": int(time.Hour.Seconds()), "scope": strings.Join(scopes, " "),
	})
}

func (i *IdP) introspect(w http.ResponseWriter, r *http.Request) {
	i.hit("introspect")
	id, secret := clientAuth(r)
	if id == "" || id != i.opts.IntrospectID || secret != i.opts.IntrospectSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	i.mu.Lock()
	c, ok := i.opaque[r.PostFormValue("token")]
	i.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	writeJSON(w, http.StatusOK, c)
}
