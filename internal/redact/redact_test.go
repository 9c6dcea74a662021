package redact

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

const tok = `tok-3f9a<&>"Zq/+=`

func TestString(t *testing.T) {
	s := New(tok, "", "short-and-other")
	jb, _ := json.Marshal("x" + tok + "y")
	for _, tc := range []struct {
		name, in string
	}{
		{"as is", "Bearer " + tok},
		{"json with HTML escaping", string(jb)},
		{"json without HTML escaping", jsonNoHTML("x" + tok)},
		{"query escaped", "https://a.example/?t=" + url.QueryEscape(tok)},
		{"path escaped", "https://a.example/" + url.PathEscape(tok)},
		{"go quoted", fmt.Sprintf("%q", "a"+tok)},
		{"second secret", "name short-and-other!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := s.String(tc.in)
			if !strings.Contains(out, Mask) {
				t.Errorf("%q: no mask in %q", tc.in, out)
			}
			for _, leak := range []string{"3f9a", "short-and-other"} {
				if strings.Contains(out, leak) {
					t.Errorf("%q leaks %q: %q", tc.in, leak, out)
				}
			}
		})
	}
	if got := s.String("nothing secret here"); got != "nothing secret here" {
		t.Errorf("clean text changed: %q", got)
	}
}

func jsonNoHTML(v string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return b.String()
}

// A secret that contains another is hidden whole, not in part.
func TestLongestFirst(t *testing.T) {
	s := New("abcdef", "abcdef-ghijkl")
	if got := s.String("x abcdef-ghijkl y"); got != "x "+Mask+" y" {
		t.Errorf("got %q", got)
	}
}

func TestNilSet(t *testing.T) {
	var s *Set
	if s.String("a") != "a" || string(s.Bytes([]byte("b"))) != "b" || !s.Empty() || New("") != nil {
		t.Error("the nil set changed something")
	}
	var buf bytes.Buffer
	if s.Writer(&buf) != &buf {
		t.Error("the nil set wraps its writer")
	}
	if s.With("abc-secret").String("abc-secret") != Mask {
		t.Error("With on nil")
	}
}

type inner struct {
	Name  string
	List  []string
	Map   map[string]string
	Any   any
	Raw   json.RawMessage
	inner string
}

type outer struct {
	Msg   string
	Ptr   *inner
	Items []inner
	Arr   [2]string
}

func TestWalk(t *testing.T) {
	s := New("sekrit-value")
	v := outer{
		Msg: "a sekrit-value b",
		Ptr: &inner{Name: "sekrit-value", List: []string{"x", "sekrit-value"}, Map: map[string]string{"k": "sekrit-value"},
			Any: "sekrit-value", Raw: json.RawMessage(`{"a":"sekrit-value"}`), inner: "sekrit-value"},
		Items: []inner{{Name: "1 sekrit-value"}},
		Arr:   [2]string{"sekrit-value", ""},
	}
	s.Walk(&v)
	b, _ := json.Marshal(v)
	if strings.Contains(string(b), "sekrit") {
		t.Errorf("walk left a secret: %s", b)
	}
	if v.Ptr.inner != "sekrit-value" {
		t.Error("walk touched an unexported field")
	}
}

func TestWriterForLogs(t *testing.T) {
	s := New(tok)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(s.Writer(&buf), nil)).Info("echo", "body", "you sent "+tok)
	slog.New(slog.NewJSONHandler(s.Writer(&buf), nil)).Info("echo", "body", "you sent "+tok)
	log.New(s.Writer(&buf), "", 0).Printf("got %s", tok)
	if strings.Contains(buf.String(), "3f9a") || strings.Count(buf.String(), Mask) != 3 {
		t.Errorf("logs: %s", buf.String())
	}
}

func TestKeyMaterial(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(key)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	s := New("some-token").WithMaterial(KeyMaterial(key)...)
	for _, block := range []*pem.Block{{Type: "EC PRIVATE KEY", Bytes: sec1}, {Type: "PRIVATE KEY", Bytes: p8}} {
		text := string(pem.EncodeToMemory(block))
		out := s.String(text)
		for _, line := range strings.Split(text, "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(out, line) {
				t.Errorf("%s: line %q survives:\n%s", block.Type, line, out)
			}
		}
	}
}

func TestMatcher(t *testing.T) {
	m := newMatcher([]string{"abc", "abcdef", "x", "cd", "zz"})
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"nothing here", "nothing here"},
		{"abcdef", "M"},
		{"abcde", "Mde"},
		{"abcabc", "MM"},
		{"-x-", "-M-"},
		{"zzz", "Mz"},
		{"ab", "ab"},
		{"tail abc", "tail M"},
		{"acd", "aM"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := strings.ReplaceAll(m.replace(tc.in), Mask, "M")
			if got != tc.want {
				t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
