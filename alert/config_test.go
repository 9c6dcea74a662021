package alert

import (
	"errors"
	"github.com/tlswatch/tlswatch/watch"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func setExampleEnv(t *testing.T) {
	t.Setenv("TLSWATCH_WEBHOOK_SECRET", "s3cret")
	t.Setenv("PD_ROUTING_KEY", "R0UT1NGKEY")
	t.Setenv("SMTP_PASSWORD", "pw")
}

// The shipped example is what the README shows: it must load.
func TestLoadExampleConfig(t *testing.T) {
	setExampleEnv(t)
	cfg, err := LoadConfig(filepath.Join("..", "examples", "tlswatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Alerts
	if a.MinLevel != watch.LevelWarning || a.Retry.MaxBackoff != 5*time.Minute || a.Retry.GiveUpAfter != 24*time.Hour {
		t.Fatalf("alerts = %+v", a)
	}
	want := map[string]string{"ops-hook": TypeWebhook, "slack": TypeSlack, "pagerduty": TypePagerDuty, "mail": TypeEmail}
	if len(a.Channels) != len(want) {
		t.Fatalf("%d channels, want %d", len(a.Channels), len(want))
	}
	for _, ch := range a.Channels {
		if want[ch.Name] != ch.Type {
			t.Errorf("channel %q has type %q, want %q", ch.Name, ch.Type, want[ch.Name])
		}
		switch ch.Type {
		case TypeWebhook:
			if ch.Secret != "s3cret" {
				t.Errorf("webhook secret not read from the environment: %q", ch.Secret)
			}
		case TypePagerDuty:
			if ch.RoutingKey != "R0UT1NGKEY" || ch.URL != DefaultPagerDutyURL {
				t.Errorf("pagerduty = %+v", ch)
			}
		case TypeEmail:
			if ch.Password != "pw" || len(ch.To) != 1 || !ch.RequireTLS {
				t.Errorf("email = %+v", ch)
			}
		}
	}
	// And a dispatcher can be built from it.
	if _, err := NewDispatcher(cfg, Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Setenv("EMPTY_VAR", "")
	hook := "    - name: h\n      type: webhook\n      url: https://h.example/x\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "", "no settings"},
		{"not yaml", "alerts: [", "not valid YAML"},
		{"unknown top", "alert:\n  min_level: info\n", "alert: unknown field"},
		{"unknown channel key", "alerts:\n  channels:\n" + hook + "      urll: x\n", "alerts.channels[0].urll: unknown field (line 6)"},
		{"bad url", "alerts:\n  channels:\n" + hook + "    - name: s\n      type: slack\n      url: ftp://x\n", "alerts.channels[1].url: must be an http(s) URL"},
		{"relative url", "alerts:\n  channels:\n    - name: s\n      type: slack\n      url: /hook\n", "alerts.channels[0].url: must be an http(s) URL"},
		{"missing url", "alerts:\n  channels:\n    - name: s\n      type: slack\n", "alerts.channels[0].url: required"},
		{"bad type", "alerts:\n  channels:\n    - name: s\n      type: teams\n      url: https://x\n", "alerts.channels[0].type: \"teams\" is not one of"},
		{"no name", "alerts:\n  channels:\n    - type: slack\n      url: https://x\n", "alerts.channels[0].name: required"},
		{"dup name", "alerts:\n  channels:\n" + hook + hook, "alerts.channels[1].name: \"h\" is already used by alerts.channels[0]"},
		{"bad level", "alerts:\n  min_level: warn\n", "alerts.min_level: \"warn\" is not one of"},
		{"bad channel level", "alerts:\n  channels:\n" + hook + "      min_level: loud\n", "alerts.channels[0].min_level"},
		{"field of another type", "alerts:\n  channels:\n" + hook + "      smtp: a:25\n", "alerts.channels[0].smtp: not used by type webhook"},
		{"env field of another type", "alerts:\n  channels:\n" + hook + "      password_env: HOME\n", "alerts.channels[0].password_env: not used by type webhook"},
		{"env unset", "alerts:\n  channels:\n" + hook + "      secret_env: NO_SUCH_VAR_TLSWATCH\n", "alerts.channels[0].secret_env: environment variable NO_SUCH_VAR_TLSWATCH is not set"},
		{"env empty", "alerts:\n  channels:\n" + hook + "      secret_env: EMPTY_VAR\n", "secret_env: environment variable EMPTY_VAR is not set"},
		{"secret twice", "alerts:\n  channels:\n" + hook + "      secret: a\n      secret_env: HOME\n", "give secret or secret_env, not both"},
		{"pd no key", "alerts:\n  channels:\n    - name: p\n      type: pagerduty\n", "alerts.channels[0].routing_key: required"},
		{"to not a list", "alerts:\n  channels:\n    - name: m\n      type: email\n      smtp: h:25\n      from: a@b.c\n      to: x@y.z\n", "alerts.channels[0].to: want a list"},
		{"bad to", "alerts:\n  channels:\n    - name: m\n      type: email\n      smtp: h:25\n      from: a@b.c\n      to: [x@y.z, nope]\n", "alerts.channels[0].to[1]: \"nope\" is not an email address"},
		{"smtp no port", "alerts:\n  channels:\n    - name: m\n      type: email\n      smtp: h\n      from: a@b.c\n      to: [x@y.z]\n", "alerts.channels[0].smtp: \"h\" must be host:port"},
		{"password without user", "alerts:\n  channels:\n    - name: m\n      type: email\n      smtp: h:25\n      from: a@b.c\n      to: [x@y.z]\n      password: p\n", "alerts.channels[0].username: required"},
		{"bad duration", "alerts:\n  retry:\n    max_backoff: 5 minutes\n", "alerts.retry.max_backoff: \"5 minutes\" is not a duration"},
		{"backoff order", "alerts:\n  retry:\n    initial_backoff: 10m\n    max_backoff: 1m\n", "alerts.retry.max_backoff"},
		{"bool as text", "alerts:\n  min_level: true\n", "alerts.min_level: want text"},
		{"channels not list", "alerts:\n  channels:\n    name: x\n", "alerts.channels: want a list"},
		{"duplicate key", "alerts:\n  min_level: info\n  min_level: warning\n", "min_level"},
		{"two docs", "alerts: {}\n---\nalerts: {}\n", "more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseConfigDefaultsAndQuotedNumbers(t *testing.T) {
	cfg, err := ParseConfig([]byte("alerts:\n  channels:\n    - name: m\n      type: email\n      smtp: 127.0.0.1:25\n      from: a@b.c\n      to: [x@y.z]\n      username: u\n      password: 12345\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Alerts.Channels[0].Password != "12345" || cfg.Alerts.MinLevel != watch.LevelWarning || cfg.Alerts.Retry.InitialBackoff != time.Second {
		t.Fatalf("cfg = %+v", cfg.Alerts)
	}
	// No alerts section at all is valid: alerts are off.
	if cfg, err := ParseConfig([]byte("# nothing yet\nalerts:\n")); err != nil || len(cfg.Alerts.Channels) != 0 {
		t.Fatalf("empty alerts: %+v %v", cfg, err)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error", err)
	}
}
