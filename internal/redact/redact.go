// Package redact hides secrets (bearer tokens, client-key material) in
// text that leaves the process: tool results, resources, log lines. A
// remote server can echo a token it was sent anywhere it likes (an error
// page, a header, a server name, a URL), so tokens are replaced in every
// form they take once quoted by JSON, a URL or a Go log line, not only as
// typed. Key material, which no server is sent, is replaced as is.
package redact

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Mask replaces every secret.
const Mask = "[redacted]"

// Set is a fixed set of secrets. It is immutable and safe for concurrent
// use; the nil *Set hides nothing.
type Set struct {
	tokens   []string // hidden in every encoding
	material []string // hidden as is
	m        *matcher
}

// New returns the set hiding the non-empty tokens, in every form they take
// once quoted (see encodings), or nil when there is none.
func New(tokens ...string) *Set {
	return build(tokens, nil)
}

// WithMaterial returns a set that also hides m as is: key material, which
// no server is ever sent and which could only leave the process printed
// verbatim.
func (s *Set) WithMaterial(m ...string) *Set {
	if s == nil {
		return build(nil, m)
	}
	return build(s.tokens, append(slices.Clone(s.material), m...))
}

func build(tokens, material []string) *Set {
	s := &Set{tokens: uniq(tokens), material: uniq(material)}
	var forms []string
	for _, t := range s.tokens {
		forms = append(forms, encodings(t)...)
	}
	forms = append(forms, s.material...)
	if s.m = newMatcher(uniq(forms)); s.m == nil {
		return nil
	}
	return s
}

func uniq(l []string) []string {
	var out []string
	for _, x := range l {
		if x != "" && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// encodings are the forms s takes in the text tlswatch emits: as is, inside
// a JSON string (with and without HTML escaping), percent-encoded in a URL,
// inside a Go-quoted string (slog's text handler), and in base64 (an echoed
// Basic header or a key's PEM body).
func encodings(s string) []string {
	var jsonHTML, jsonPlain bytes.Buffer
	_ = json.NewEncoder(&jsonHTML).Encode(s)
	enc := json.NewEncoder(&jsonPlain)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	unquote := func(b bytes.Buffer) string {
		return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(b.String()), `"`), `"`)
	}
	q := strconv.Quote(s)
	return []string{
		s,
		unquote(jsonHTML),
		unquote(jsonPlain),
		url.QueryEscape(s),
		url.PathEscape(s),
		q[1 : len(q)-1],
		base64.StdEncoding.EncodeToString([]byte(s)),
		base64.RawURLEncoding.EncodeToString([]byte(s)),
	}
}

// With returns a set that also hides more tokens (one given for a call).
func (s *Set) With(more ...string) *Set {
	if s == nil {
		return New(more...)
	}
	return build(append(slices.Clone(s.tokens), more...), s.material)
}

// Empty reports whether the set hides nothing.
func (s *Set) Empty() bool { return s == nil }

// String returns x with every secret replaced by Mask.
func (s *Set) String(x string) string {
	if s == nil || x == "" {
		return x
	}
	return s.m.replace(x)
}

// Bytes returns b with every secret replaced by Mask; b itself when there
// is nothing to hide.
func (s *Set) Bytes(b []byte) []byte {
	if s == nil || len(b) == 0 {
		return b
	}
	out := s.m.replace(string(b))
	if len(out) == len(b) && out == string(b) {
		return b
	}
	return []byte(out)
}

// Walk replaces the secrets in every string reachable from ptr (a pointer
// to a struct, slice or map): exported struct fields, slice and array
// elements, map values. Unexported fields are left alone.
func (s *Set) Walk(ptr any) {
	if s == nil || ptr == nil {
		return
	}
	s.walk(reflect.ValueOf(ptr), 0)
}

// maxDepth stops a walk on a cyclic pointer graph; results are shallow.
const maxDepth = 32

func (s *Set) walk(v reflect.Value, depth int) {
	if depth > maxDepth {
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			s.walkElem(v, depth)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				s.walk(v.Field(i), depth+1)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if v.Kind() == reflect.Slice && v.CanSet() {
				v.SetBytes(s.Bytes(v.Bytes())) // json.RawMessage
			}
			return
		}
		for i := 0; i < v.Len(); i++ {
			s.walk(v.Index(i), depth+1)
		}
	case reflect.Map:
		s.walkMap(v, depth)
	case reflect.String:
		if v.CanSet() {
			v.SetString(s.String(v.String()))
		}
	}
}

// walkElem follows a pointer, or copies an interface's value out, walks the
// copy and stores it back (values inside interfaces are not addressable).
func (s *Set) walkElem(v reflect.Value, depth int) {
	if v.Kind() == reflect.Pointer {
		s.walk(v.Elem(), depth+1)
		return
	}
	inner := v.Elem()
	cp := reflect.New(inner.Type()).Elem()
	cp.Set(inner)
	s.walk(cp, depth+1)
	if v.CanSet() {
		v.Set(cp)
	}
}

func (s *Set) walkMap(v reflect.Value, depth int) {
	for _, k := range v.MapKeys() {
		val := v.MapIndex(k)
		cp := reflect.New(val.Type()).Elem()
		cp.Set(val)
		s.walk(cp, depth+1)
		v.SetMapIndex(k, cp)
	}
}

// Writer returns a writer that hides the secrets in each Write before
// passing it on: the sink for log handlers, which write one record per
// call. w itself when the set is empty.
func (s *Set) Writer(w io.Writer) io.Writer {
	if s == nil {
		return w
	}
	return writer{s: s, w: w}
}

type writer struct {
	s *Set
	w io.Writer
}

func (w writer) Write(p []byte) (int, error) {
	if _, err := w.w.Write(w.s.Bytes(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// KeyMaterial returns the text forms of a private key worth hiding: its
// PKCS#8 encoding, and its PKCS#1 (RSA) or SEC 1 (EC) encoding, in base64,
// and each 64-character line of those as a PEM file carries them. Nil for
// a key that cannot be marshalled (a hardware key has no material to leak).
func KeyMaterial(key crypto.PrivateKey) []string {
	var ders [][]byte
	if der, err := x509.MarshalPKCS8PrivateKey(key); err == nil {
		ders = append(ders, der)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		ders = append(ders, x509.MarshalPKCS1PrivateKey(k))
	case *ecdsa.PrivateKey:
		if der, err := x509.MarshalECPrivateKey(k); err == nil {
			ders = append(ders, der)
		}
	}
	var out []string
	for _, der := range ders {
		b64 := base64.StdEncoding.EncodeToString(der)
		out = append(out, b64)
		for len(b64) > 64 {
			out = append(out, b64[:64])
			b64 = b64[64:]
		}
		if len(b64) >= 16 {
			out = append(out, b64)
		}
	}
	return out
}
