package probe

import "testing"

func TestStageDays(t *testing.T) {
	cases := []struct {
		stage Stage
		days  int
		ok    bool
	}{
		{Days(30).Stage(), 30, true},
		{Hours(36).Stage(), 0, false},
		{"7d", 7, true},
		{StageNone, 0, false},
		{StageExpired, 0, false},
		{"", 0, false},
		{"d", 0, false},
		{"-1d", 0, false},
		{"30", 0, false},
	}
	for _, c := range cases {
		t.Run(string(c.stage), func(t *testing.T) {
			if d, ok := c.stage.Days(); d != c.days || ok != c.ok {
				t.Errorf("Days() = %d, %v; want %d, %v", d, ok, c.days, c.ok)
			}
		})
	}
}

func TestTargetInfoString(t *testing.T) {
	cases := []struct {
		t    TargetInfo
		want string
	}{
		{TargetInfo{Host: "mcp.example.com", Port: 443}, "mcp.example.com:443"},
		{TargetInfo{Host: "::1", Port: 8443, IP: "::1"}, "[::1]:8443"},
		{TargetInfo{Host: "mail.example.com", Port: 143, Scheme: "imap"}, "imap://mail.example.com:143"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			if got := c.t.String(); got != c.want {
				t.Errorf("String() = %q, want %q", got, c.want)
			}
		})
	}
}

func TestSortFindings(t *testing.T) {
	fs := []Finding{{Code: "a", Severity: SeverityInfo}, {Code: "b", Severity: SeverityCritical},
		{Code: "c", Severity: SeverityWarning}, {Code: "d", Severity: SeverityCritical}}
	SortFindings(fs)
	got := ""
	for _, f := range fs {
		got += f.Code
	}
	if got != "bdca" {
		t.Errorf("order %s, want bdca (most severe first, stable)", got)
	}
}
