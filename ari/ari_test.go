package ari

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/pebblelab"
)

func TestCertID(t *testing.T) {
	aki := []byte{0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4}
	cases := []struct {
		name   string
		cert   *x509.Certificate
		want   string
		errSub string
	}{
		// The example of RFC 9773 section 4.1: the serial's top bit is
		// set, so its DER form starts with a zero byte.
		{"rfc_example", &x509.Certificate{AuthorityKeyId: aki, SerialNumber: big.NewInt(0x87654321)}, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", ""},
		{"small_serial", &x509.Certificate{AuthorityKeyId: []byte{1}, SerialNumber: big.NewInt(0x7f)}, "AQ.fw", ""},
		{"no_aki", &x509.Certificate{SerialNumber: big.NewInt(1)}, "", "authority key identifier"},
		{"no_serial", &x509.Certificate{AuthorityKeyId: aki}, "", "serial"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CertID(tc.cert)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Errorf("CertID = %q, %v; want an error about %q", got, err, tc.errSub)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("CertID = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"", 6 * time.Hour},
		{"21600", 6 * time.Hour},
		{"5", time.Minute},
		{"999999999", 24 * time.Hour},
		{now.Add(2 * time.Hour).Format(http.TimeFormat), 2 * time.Hour},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Minute},
		{"soon", 6 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.header, func(t *testing.T) {
			resp := &http.Response{Header: http.Header{}}
			if tc.header != "" {
				resp.Header.Set("Retry-After", tc.header)
			}
			if got := retryAfter(resp, now); got != tc.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}

func labClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}}
}

// TestRenewalWindowPebble asks a real ACME server for the window of a
// certificate it issued: first around two thirds of the lifetime, then,
// once the certificate is revoked and the cached answer has run out
// (Pebble says Retry-After 6 hours), in the past.
func TestRenewalWindowPebble(t *testing.T) {
	lab := pebblelab.Start(t, 9*24*time.Hour)
	cert := lab.Issue("ari.tlswatch.test")
	cache := NewCache()
	f := Fetcher{Client: labClient(lab.Roots), Cache: cache, Now: time.Now()}
	ctx := context.Background()

	dir, err := f.Directory(ctx, lab.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	if dir.RenewalInfo == "" || len(dir.CAAIdentities) != 1 || dir.CAAIdentities[0] != pebblelab.CAAIdentity {
		t.Fatalf("directory = %+v", dir)
	}
	w, err := f.RenewalWindow(ctx, dir, cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore)
	mid := cert.Leaf.NotBefore.Add(life * 2 / 3)
	if w.Start.After(mid) || w.End.Before(mid) || !w.Start.After(f.Now) {
		t.Fatalf("fresh certificate window %v - %v, want around %v and in the future", w.Start, w.End, mid)
	}

	lab.Revoke(cert)
	if again, err := f.RenewalWindow(ctx, dir, cert.Leaf); err != nil || again != w {
		t.Fatalf("within Retry-After the cached window must answer: %+v %v", again, err)
	}
	f.Now = f.Now.Add(6*time.Hour + time.Second)
	w, err = f.RenewalWindow(ctx, dir, cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Start.Before(time.Now()) {
		t.Errorf("revoked certificate window %v - %v, want it started", w.Start, w.End)
	}
}

func TestRenewalWindowErrors(t *testing.T) {
	var hits int
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		switch {
		case strings.HasPrefix(r.URL.Path, "/unknown/"):
			w.Header().Set("Retry-After", "120")
			http.NotFound(w, r)
		case strings.HasPrefix(r.URL.Path, "/busy/"):
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case strings.HasPrefix(r.URL.Path, "/backwards/"):
			w.Write([]byte(`{"suggestedWindow":{"start":"2026-11-02T00:00:00Z","end":"2026-11-01T00:00:00Z"}}`))
		case strings.HasPrefix(r.URL.Path, "/huge/"):
			w.Write([]byte(`{"x":"` + strings.Repeat("a", maxBodyBytes) + `"}`))
		}
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	f := Fetcher{Client: labClient(roots), Cache: NewCache(), Now: now}
	ctx := context.Background()
	cert := &x509.Certificate{AuthorityKeyId: []byte{1}, SerialNumber: big.NewInt(1)}
	cases := []struct {
		name   string
		path   string
		errSub string
		kept   bool // a second ask within the minute is answered from the cache
	}{
		{"unknown", "/unknown", "does not know", true},
		{"temporary", "/busy", "503", false},
		{"backwards_window", "/backwards", "invalid suggestedWindow", true},
		{"too_large", "/huge", "larger than", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := Directory{URL: "lab", RenewalInfo: srv.URL + tc.path}
			before := hits
			_, err := f.RenewalWindow(ctx, dir, cert)
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Fatalf("err = %v, want %q", err, tc.errSub)
			}
			if tc.name == "unknown" && !errors.Is(err, ErrUnknownCertificate) {
				t.Errorf("err = %v, want ErrUnknownCertificate", err)
			}
			f.RenewalWindow(ctx, dir, cert)
			if got := hits - before; (got == 1) != tc.kept {
				t.Errorf("%d requests for two asks; kept=%v", got, tc.kept)
			}
		})
	}
	if _, err := (Fetcher{Client: labClient(roots)}).Directory(ctx, "http://127.0.0.1/dir"); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("plain http directory: %v", err)
	}
}
