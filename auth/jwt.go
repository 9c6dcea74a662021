package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// allowedAlgs are the signature algorithms accepted: asymmetric only, so
// never "none" and never an HMAC keyed with a public key.
var allowedAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Token verification outcomes, worded for the client's error_description
// (fixed phrases: nothing of the token is echoed).
var (
	errMalformed     = errors.New("the token is not a well-formed signed JWT")
	errAlgorithm     = errors.New("the token's signature algorithm is not accepted")
	errType          = errors.New("the token is not an access token (typ)")
	errIssuer        = errors.New("the token's issuer is not trusted here")
	errAudience      = errors.New("the token was not issued for this resource (aud)")
	errExpired       = errors.New("the token has expired")
	errNoExpiry      = errors.New("the token has no expiry (exp)")
	errNotYetValid   = errors.New("the token is not valid yet (nbf)")
	errIssuedFuture  = errors.New("the token is issued in the future (iat)")
	errNoSubject     = errors.New("the token names no subject (sub or client_id)")
	errNotAJWT       = errors.New("the token is not a JWT and no introspection endpoint is configured")
	errInactive      = errors.New("the token is not active")
	errIntrospection = errors.New("the token could not be introspected")
)

// accessClaims are the claims of an RFC 9068 JWT access token tlswatch
// reads. Some identity providers put scopes in "scp" (an array or a
// string) instead of "scope".
type accessClaims struct {
	jwt.Claims
	ClientID string          `json:"client_id"`
	AZP      string          `json:"azp"`
	Scope    string          `json:"scope"`
	SCP      json.RawMessage `json:"scp"`
}

func (c accessClaims) scopes() []string {
	out := strings.Fields(c.Scope)
	var list []string
	var one string
	switch {
	case json.Unmarshal(c.SCP, &list) == nil:
		out = append(out, list...)
	case json.Unmarshal(c.SCP, &one) == nil:
		out = append(out, strings.Fields(one)...)
	}
	return out
}

// jwtAlg returns the alg of a JWS compact token (three segments, a JSON
// header naming an alg), or "" for an opaque token, which goes to
// introspection.
func jwtAlg(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return ""
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &h) != nil {
		return ""
	}
	return h.Alg
}

// verifyJWT verifies a JWT access token: algorithm, type, a trusted issuer,
// the signature with that issuer's key, expiry, validity start, issue time,
// and the audience.
func (rs *ResourceServer) verifyJWT(ctx context.Context, raw, alg string) (Principal, error) {
	if !slices.Contains(allowedAlgs, jose.SignatureAlgorithm(alg)) {
		return Principal{}, errAlgorithm
	}
	tok, err := jwt.ParseSigned(raw, allowedAlgs)
	if err != nil {
		return Principal{}, errMalformed
	}
	if len(tok.Headers) != 1 {
		return Principal{}, errMalformed
	}
	h := tok.Headers[0]
	if !accessTokenType(h.ExtraHeaders[jose.HeaderType]) {
		return Principal{}, errType
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Principal{}, errMalformed
	}
	keys := rs.keysFor(unverified.Issuer)
	if keys == nil {
		return Principal{}, errIssuer
	}
	var c accessClaims
	if err := keys.verify(ctx, h.KeyID, func(k *jose.JSONWebKey) error { return tok.Claims(k, &c) }); err != nil {
		return Principal{}, err
	}
	if err := rs.checkClaims(c); err != nil {
		return Principal{}, err
	}
	sub := c.Subject
	clientID := c.ClientID
	if clientID == "" {
		clientID = c.AZP
	}
	if sub == "" {
		sub = clientID
	}
	if sub == "" {
		return Principal{}, errNoSubject
	}
	return Principal{Subject: sub, ClientID: clientID, Issuer: c.Issuer, Scopes: c.scopes()}, nil
}

// checkClaims judges the verified claims by the clock, with ClockSkew, and
// the audience. (The issuer chose the key that verified them.)
func (rs *ResourceServer) checkClaims(c accessClaims) error {
	if c.Expiry == nil {
		return errNoExpiry
	}
	err := c.Claims.ValidateWithLeeway(jwt.Expected{Time: rs.cfg.Now()}, rs.cfg.ClockSkew)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return errExpired
	case errors.Is(err, jwt.ErrNotValidYet):
		return errNotYetValid
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return errIssuedFuture
	case err != nil:
		return errMalformed
	}
	if !audienceMatches(c.Audience, rs.cfg.Resource) {
		return errAudience
	}
	return nil
}

// accessTokenType accepts RFC 9068's at+jwt, and JWT or no typ from
// identity providers that do not set it; anything else (an ID token typed
// otherwise, a logout token, a DPoP proof) is not an access token.
func accessTokenType(typ any) bool {
	if typ == nil {
		return true
	}
	s, ok := typ.(string)
	if !ok {
		return false
	}
	switch strings.ToLower(s) {
	case "at+jwt", "application/at+jwt", "jwt":
		return true
	}
	return false
}
