package caa

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlswatch/tlswatch/internal/testlab"
)

var zone = testlab.DNSZone{
	"example.test":         {`0 issue "letsencrypt.org"`, `0 iodef "mailto:sec@example.test"`},
	"other.example.test":   {`0 issue "digicert.com; cansignhttpexchanges=yes"`},
	"wild.test":            {`0 issue "letsencrypt.org"`, `0 issuewild ";"`},
	"broken.test":          {testlab.DNSServFail},
	"critical.test":        {`128 tbs "unknown"`, `0 issue "letsencrypt.org"`},
	"deep.a.b.c.none.test": nil,
}

func TestRelevant(t *testing.T) {
	srv := testlab.ServeDNS(t, zone, false)
	r := Resolver{Server: srv.Addr, Timeout: 2 * time.Second}
	cases := []struct {
		name    string
		at      string
		records string
		errSub  string
	}{
		{"example.test", "example.test", `[0 issue "letsencrypt.org" 0 iodef "mailto:sec@example.test"]`, ""},
		{"mcp.api.example.test", "example.test", `[0 issue "letsencrypt.org" 0 iodef "mailto:sec@example.test"]`, ""},
		{"other.example.test", "other.example.test", `[0 issue "digicert.com; cansignhttpexchanges=yes"]`, ""},
		{"*.example.test", "example.test", `[0 issue "letsencrypt.org" 0 iodef "mailto:sec@example.test"]`, ""},
		{"deep.a.b.c.none.test", "", "[]", ""},
		{"x.broken.test", "", "", "SERVFAIL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := r.Relevant(context.Background(), tc.name)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("err = %v, want %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(set.Records); set.Name != tc.at || (got != tc.records && !(tc.records == "[]" && len(set.Records) == 0)) {
				t.Errorf("Relevant = %q %s, want %q %s", set.Name, got, tc.at, tc.records)
			}
		})
	}
}

func TestRelevantOverTCPAndCached(t *testing.T) {
	srv := testlab.ServeDNS(t, zone, true)
	r := Resolver{Server: srv.Addr, Timeout: 2 * time.Second, Cache: NewCache(), Now: time.Now()}
	set, err := r.Relevant(context.Background(), "api.example.test")
	if err != nil || set.Name != "example.test" || len(set.Records) != 2 {
		t.Fatalf("over TCP after a truncated UDP answer: %+v %v", set, err)
	}
	n := srv.Queries.Load() // two names, each UDP then TCP
	if n != 4 {
		t.Errorf("%d queries, want 4", n)
	}
	if _, err := r.Relevant(context.Background(), "api.example.test"); err != nil || srv.Queries.Load() != n {
		t.Errorf("the second lookup asked again (%d queries, %v)", srv.Queries.Load(), err)
	}
	r.Now = r.Now.Add(6 * time.Minute) // the empty answer (5 min) is stale, the records (300 s) too
	r.Relevant(context.Background(), "api.example.test")
	if srv.Queries.Load() != n+4 {
		t.Errorf("after the TTLs: %d queries, want %d", srv.Queries.Load(), n+4)
	}
}

func TestRelevantDeadline(t *testing.T) {
	// A server that never answers: 127.0.0.1 on a port where nothing
	// listens over UDP gets no reply (or an ICMP refusal); either way the
	// lookup ends within its deadline.
	r := Resolver{Server: testlab.RefusedAddr(t), Timeout: 300 * time.Millisecond}
	start := time.Now()
	if _, err := r.Relevant(context.Background(), "example.test"); err == nil {
		t.Fatal("lookup against a dead server succeeded")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestCheck(t *testing.T) {
	le := []string{"letsencrypt.org"}
	set := func(name string, recs ...Record) Set { return Set{Name: name, Records: recs} }
	issue := func(v string) Record { return Record{Tag: "issue", Value: v} }
	wild := func(v string) Record { return Record{Tag: "issuewild", Value: v} }
	cases := []struct {
		name     string
		set      Set
		wildcard bool
		ok       bool
		reason   string
	}{
		{"no_records", Set{}, false, true, ""},
		{"allowed", set("a.test", issue("letsencrypt.org")), false, true, ""},
		{"allowed_case_and_params", set("a.test", issue(" LetsEncrypt.org ; accounturi=https://x/acct/1")), false, true, ""},
		{"other_ca", set("a.test", issue("digicert.com"), issue("pki.goog")), false, false, "only digicert.com, pki.goog"},
		{"no_ca_at_all", set("a.test", issue(";")), false, false, "no CA"},
		{"only_iodef", set("a.test", Record{Tag: "iodef", Value: "mailto:x@a.test"}), false, true, ""},
		{"wildcard_governed_by_issuewild", set("a.test", issue("letsencrypt.org"), wild(";")), true, false, "issuewild"},
		{"wildcard_falls_back_to_issue", set("a.test", issue("letsencrypt.org")), true, true, ""},
		{"issuewild_ignored_for_plain_names", set("a.test", issue("letsencrypt.org"), wild(";")), false, true, ""},
		{"unknown_critical_tag", set("a.test", Record{Flag: 128, Tag: "tbs", Value: "x"}, issue("letsencrypt.org")), false, false, "critical"},
		{"unknown_noncritical_tag", set("a.test", Record{Tag: "tbs", Value: "x"}, issue("letsencrypt.org")), false, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Check(tc.set, le, tc.wildcard)
			if v.Permitted != tc.ok || !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("Check = %+v, want permitted=%v reason containing %q", v, tc.ok, tc.reason)
			}
		})
	}
}
