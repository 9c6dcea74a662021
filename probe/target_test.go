package probe

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	ok := []struct {
		target, ip, sni string
		timeout         int
		want            Target
	}{
		{"mcp.example.com", "", "", 0, Target{Host: "mcp.example.com", Port: 443, SNI: "mcp.example.com", Timeout: 10 * time.Second}},
		{"  MCP.Example.COM.  ", "", "", 0, Target{Host: "mcp.example.com", Port: 443, SNI: "mcp.example.com", Timeout: DefaultTimeout}},
		{"mcp.example.com:8443", "", "", 3000, Target{Host: "mcp.example.com", Port: 8443, SNI: "mcp.example.com", Timeout: 3 * time.Second}},
		{"https://mcp.example.com/mcp", "", "", 0, Target{Host: "mcp.example.com", Port: 443, SNI: "mcp.example.com", Path: "/mcp", Timeout: DefaultTimeout}},
		{"HTTPS://mcp.example.com:9443/v1/mcp?x=1", "", "", 0, Target{Host: "mcp.example.com", Port: 9443, SNI: "mcp.example.com", Path: "/v1/mcp", Timeout: DefaultTimeout}},
		{"https://[2001:db8::1]:8443/mcp", "", "", 0, Target{Host: "2001:db8::1", Port: 8443, Path: "/mcp", Timeout: DefaultTimeout}},
		{"[2001:db8::1]:8443", "", "", 0, Target{Host: "2001:db8::1", Port: 8443, Timeout: DefaultTimeout}},
		{"[2001:db8::1]", "", "", 0, Target{Host: "2001:db8::1", Port: 443, Timeout: DefaultTimeout}},
		{"2001:db8::1", "", "", 0, Target{Host: "2001:db8::1", Port: 443, Timeout: DefaultTimeout}},
		{"203.0.113.7:444", "", "", 0, Target{Host: "203.0.113.7", Port: 444, Timeout: DefaultTimeout}},
		{"bücher.example", "", "", 0, Target{Host: "xn--bcher-kva.example", Port: 443, SNI: "xn--bcher-kva.example", Timeout: DefaultTimeout}},
		{"https://bücher.example/mcp", "", "", 0, Target{Host: "xn--bcher-kva.example", Port: 443, SNI: "xn--bcher-kva.example", Path: "/mcp", Timeout: DefaultTimeout}},
		{"mcp.example.com", "203.0.113.7", "", 0, Target{Host: "mcp.example.com", Port: 443, SNI: "mcp.example.com", IP: "203.0.113.7", Timeout: DefaultTimeout}},
		{"mcp.example.com", "[2001:db8::7]", "", 0, Target{Host: "mcp.example.com", Port: 443, SNI: "mcp.example.com", IP: "2001:db8::7", Timeout: DefaultTimeout}},
		{"mcp.example.com", "", "Other.Example.com", 60000, Target{Host: "mcp.example.com", Port: 443, SNI: "other.example.com", Timeout: time.Minute}},
		{"mcp.example.com:8443/mcp", "", "", 0, Target{Host: "mcp.example.com", Port: 8443, SNI: "mcp.example.com", Path: "/mcp", Timeout: DefaultTimeout}},
		{"localhost:65535", "", "", 1, Target{Host: "localhost", Port: 65535, SNI: "localhost", Timeout: time.Millisecond}},
	}
	for _, tc := range ok {
		t.Run("ok/"+tc.target, func(t *testing.T) {
			got, err := ParseTarget(tc.target, tc.ip, tc.sni, tc.timeout)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	bad := []struct {
		target, ip, sni string
		timeout         int
		field, reason   string
	}{
		{"", "", "", 0, "target", "required"},
		{"   ", "", "", 0, "target", "required"},
		{"http://mcp.example.com", "", "", 0, "target", "not TLS"},
		{"wss://mcp.example.com", "", "", 0, "target", "not supported"},
		{"gopher://mcp.example.com", "", "", 0, "target", "not supported"},
		{"https://user:pw@mcp.example.com", "", "", 0, "target", "credentials"},
		{"user@mcp.example.com", "", "", 0, "target", "credentials"},
		{"mcp.example.com:0", "", "", 0, "target", "out of range"},
		{"mcp.example.com:65536", "", "", 0, "target", "out of range"},
		{"mcp.example.com:99999999999", "", "", 0, "target", "port"},
		{"mcp.example.com:-1", "", "", 0, "target", "port"},
		{"mcp.example.com:https", "", "", 0, "target", "port"},
		// Found by FuzzParseTarget: idna turned the byte into U+FFFD and
		// then "xn--zn7c", a name that does not parse again.
		{"\xff", "", "", 0, "target", "UTF-8"},
		{"mcp.example.com", "", "a\xffb.example", 0, "sni", "UTF-8"},
		{"mcp.example.com:", "", "", 0, "target", "empty port"},
		{":443", "", "", 0, "target", "no host"},
		{"https://:443/mcp", "", "", 0, "target", "no host"},
		{"https:///mcp", "", "", 0, "target", "no host"},
		{"[2001:db8::1", "", "", 0, "target", "missing ]"},
		{"[mcp.example.com]:443", "", "", 0, "target", "not an IPv6"},
		{"2001:db8::zz", "", "", 0, "target", "IPv6"},
		{"mcp example.com", "", "", 0, "target", "invalid host"},
		{"*.example.com", "", "", 0, "target", "invalid host"},
		{"a..b", "", "", 0, "target", "invalid host"},
		{"1.2.3", "", "", 0, "target", "neither"},
		{strings.Repeat("a", 64) + ".example.com", "", "", 0, "target", "invalid host"},
		{strings.Repeat("abcdefgh.", 30) + "com", "", "", 0, "target", "too long"},
		{"https://x.example/" + strings.Repeat("p", 3000), "", "", 0, "target", "too long"},
		{"mcp.example.com", "999.1.1.1", "", 0, "ip", "not an IP"},
		{"mcp.example.com", "mcp.example.com", "", 0, "ip", "not an IP"},
		{"mcp.example.com", "fe80::1%eth0", "", 0, "ip", "not an IP"},
		{"mcp.example.com", "", "203.0.113.7", 0, "sni", "not an IP"},
		{"mcp.example.com", "", "bad name!", 0, "sni", "invalid host"},
		{"mcp.example.com", "", "", -1, "timeout_ms", "out of range"},
		{"mcp.example.com", "", "", 60001, "timeout_ms", "out of range"},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.field+"/"+tc.target+tc.ip+tc.sni, func(t *testing.T) {
			_, err := ParseTarget(tc.target, tc.ip, tc.sni, tc.timeout)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want *FieldError", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Reason, tc.reason) {
				t.Errorf("got %q, want field %s with %q", err, tc.field, tc.reason)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Errorf("message %q does not start with the field", err)
			}
		})
	}
}

func TestParseTargetSTARTTLSHook(t *testing.T) {
	// Schemes registered in TLSSchemes are accepted with their default
	// port; others are refused.
	for scheme, port := range TLSSchemes {
		got, err := ParseTarget(scheme+"://mail.example.com", "", "", 0)
		if err != nil || got.Scheme != scheme || got.Port != port {
			t.Errorf("%s: %+v %v", scheme, got, err)
		}
	}
	if _, err := ParseTarget("nosuchproto://mail.example.com", "", "", 0); err == nil {
		t.Error("unregistered scheme accepted")
	}
}
