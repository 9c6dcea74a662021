// Package alert sends watch alerts to the operator's channels beside the MCP
// notifications: a generic signed JSON webhook, a Slack incoming webhook,
// PagerDuty Events API v2 and email over SMTP.
//
// Channels come only from the operator's config file (--config): no tool call
// can name a URL, so an agent cannot aim the server at arbitrary hosts.
// Deliveries go through a persisted outbox (store.Outbox) and are retried with
// exponential backoff, so a receiver that is down for an hour loses nothing
// and a restart does not resend what was delivered.
package alert

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	// go.yaml.in/yaml/v3 is the maintained home of gopkg.in/yaml.v3 (the YAML
	// project took it over); the standard library has no YAML, operators
	// expect YAML for a config file, and the module is already in the build
	// through prometheus/common. We use its Node API to name the exact field
	// (alerts.channels[1].url) in every error.
	yaml "go.yaml.in/yaml/v3"
)

// Channel types.
const (
	TypeWebhook   = "webhook"
	TypeSlack     = "slack"
	TypePagerDuty = "pagerduty"
	TypeEmail     = "email"
)

// DefaultPagerDutyURL is the Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Retry defaults.
const (
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultGiveUpAfter    = 24 * time.Hour
)

// Config is the operator's config file. Only the alerts section exists today;
// unknown keys anywhere are rejected so that a typo never silently disables
// an alert.
type Config struct {
	Alerts Alerts `yaml:"alerts"`
}

// Alerts configures alert delivery.
type Alerts struct {
	// MinLevel is the lowest event level sent: info, warning (default) or
	// critical. A channel may override it.
	MinLevel string `yaml:"min_level"`
	// Retry tunes the outbox's backoff.
	Retry Retry `yaml:"retry"`
	// Channels are the receivers. Their names identify queued deliveries
	// across restarts: renaming or removing a channel drops what is queued
	// for it.
	Channels []Channel `yaml:"channels"`
}

// Retry tunes redelivery. Zero values mean the defaults.
type Retry struct {
	// InitialBackoff is the wait after the first failure; it doubles per
	// failure. Default 1s.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff caps the wait between attempts. Default 5m.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// GiveUpAfter is how old an undelivered alert may grow before it is
	// dropped (and logged). Default 24h.
	GiveUpAfter time.Duration `yaml:"give_up_after"`
}

// Channel is one receiver. Which fields apply depends on Type; a field that
// does not apply is an error rather than silently ignored.
type Channel struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// MinLevel overrides Alerts.MinLevel for this channel.
	MinLevel string `yaml:"min_level"`

	// URL: webhook and slack (required), pagerduty (DefaultPagerDutyURL).
	URL string `yaml:"url"`

	// Secret signs webhook bodies (HMAC-SHA256); SecretEnv names an
	// environment variable holding it. Without either the signature header
	// is omitted.
	Secret    string `yaml:"secret"`
	SecretEnv string `yaml:"secret_env"`

	// RoutingKey is the PagerDuty integration key (or RoutingKeyEnv).
	RoutingKey    string `yaml:"routing_key"`
	RoutingKeyEnv string `yaml:"routing_key_env"`

	// Email: SMTP is host:port. STARTTLS is used when the server offers it;
	// RequireTLS refuses to send otherwise. Credentials are only sent over
	// TLS (or to localhost), as net/smtp enforces.
	SMTP        string   `yaml:"smtp"`
	From        string   `yaml:"from"`
	To          []string `yaml:"to"`
	Username    string   `yaml:"username"`
	Password    string   `yaml:"password"`
	PasswordEnv string   `yaml:"password_env"`
	RequireTLS  bool     `yaml:"require_tls"`
}

// String describes the channel without its secrets (URL path, keys,
// password), so a Config can be logged.
func (ch Channel) String() string {
	s := ch.Name + " (" + ch.Type
	switch {
	case ch.URL != "":
		s += " " + redactURL(ch.URL)
	case ch.SMTP != "":
		s += " smtp " + ch.SMTP
	}
	return s + ")"
}

// LoadConfig reads and validates the operator's config file. Secrets named by
// *_env keys are read from the environment now, so that a missing variable
// fails at startup rather than at the first alert. Errors name the field, as
// in "alerts.channels[1].url: must be an http(s) URL".
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig is LoadConfig on bytes.
func ParseConfig(data []byte) (Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("the file has no settings; want an alerts: section (see examples/tlswatch.yaml)")
		}
		return Config{}, fmt.Errorf("not valid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("more than one YAML document; want exactly one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	// Check the shape first: yaml's own errors name Go types and lines, ours
	// name the field.
	if err := checkNode(root, reflect.TypeFor[Config](), ""); err != nil {
		return Config{}, err
	}
	var cfg Config
	if err := root.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("decode: %w", err)
	}
	if err := cfg.resolveEnv(os.LookupEnv); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// checkNode walks n against the Go type t (a struct with yaml tags, slices,
// scalars) and reports unknown keys and wrong kinds with a dotted path.
func checkNode(n *yaml.Node, t reflect.Type, path string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	name := path
	if name == "" {
		name = "the top level"
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an empty value keeps the default
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a duration such as 30s, 5m or 24h", name)
		}
		d, err := time.ParseDuration(n.Value)
		if err != nil || d < 0 {
			return fmt.Errorf("%s: %q is not a duration; want e.g. 30s, 5m or 24h", name, n.Value)
		}
		return nil
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: want a mapping of keys, got %s", name, nodeKind(n))
		}
		return checkMapping(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: want a list (e.g. [a, b] or one \"- item\" per line), got %s", name, nodeKind(n))
		}
		for i, c := range n.Content {
			if err := checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	default:
		return checkScalar(n, t, name)
	}
}

// checkMapping checks the keys of a mapping against the yaml tags of the
// struct type t, and each value against its field's type.
func checkMapping(n *yaml.Node, t reflect.Type, path string) error {
	fields := map[string]reflect.StructField{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f
		known = append(known, tag)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		f, ok := fields[key]
		if !ok {
			return fmt.Errorf("%s: unknown field (line %d); known fields: %s", sub, n.Content[i].Line, strings.Join(known, ", "))
		}
		if seen[key] {
			return fmt.Errorf("%s: given twice (line %d)", sub, n.Content[i].Line)
		}
		seen[key] = true
		if err := checkNode(n.Content[i+1], f.Type, sub); err != nil {
			return err
		}
	}
	return nil
}

// checkScalar checks a single value against a bool or string field.
func checkScalar(n *yaml.Node, t reflect.Type, name string) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: want a single value, got %s", name, nodeKind(n))
	}
	switch t.Kind() {
	case reflect.Bool:
		if _, err := strconv.ParseBool(n.Value); err != nil {
			return fmt.Errorf("%s: %q is not true or false", name, n.Value)
		}
	case reflect.String:
		if n.Tag != "!!str" && n.Style == 0 && n.Tag != "!!int" && n.Tag != "!!float" {
			// true/false or the like where text is expected is almost
			// certainly a mistake; numbers are fine as text.
			return fmt.Errorf("%s: want text, got %s %q (quote it)", name, strings.TrimPrefix(n.Tag, "!!"), n.Value)
		}
	}
	return nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// resolveEnv fills secrets from the environment variables the file names.
func (c *Config) resolveEnv(lookup func(string) (string, bool)) error {
	for i := range c.Alerts.Channels {
		ch := &c.Alerts.Channels[i]
		p := fmt.Sprintf("alerts.channels[%d]", i)
		for _, s := range []struct {
			field, envField string
			value           *string
			env             string
		}{
			{"secret", "secret_env", &ch.Secret, ch.SecretEnv},
			{"routing_key", "routing_key_env", &ch.RoutingKey, ch.RoutingKeyEnv},
			{"password", "password_env", &ch.Password, ch.PasswordEnv},
		} {
			if s.env == "" {
				continue
			}
			if *s.value != "" {
				return fmt.Errorf("%s: give %s or %s, not both", p, s.field, s.envField)
			}
			v, ok := lookup(s.env)
			if !ok || v == "" {
				return fmt.Errorf("%s.%s: environment variable %s is not set", p, s.envField, s.env)
			}
			*s.value = v
		}
	}
	return nil
}

var channelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Validate checks a Config (LoadConfig calls it; callers that build a Config
// in code get the same checks from NewDispatcher). It fills defaults in
// place: Alerts.MinLevel, the PagerDuty URL and the retry settings.
func (c *Config) Validate() error {
	a := &c.Alerts
	if a.MinLevel == "" {
		a.MinLevel = watch.LevelWarning
	}
	if probe.Severity(a.MinLevel).Rank() == 0 {
		return fmt.Errorf("alerts.min_level: %q is not one of info, warning, critical", a.MinLevel)
	}
	r := &a.Retry
	if r.InitialBackoff == 0 {
		r.InitialBackoff = DefaultInitialBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = DefaultMaxBackoff
	}
	if r.GiveUpAfter == 0 {
		r.GiveUpAfter = DefaultGiveUpAfter
	}
	switch {
	case r.InitialBackoff < 0:
		return errors.New("alerts.retry.initial_backoff: must be positive")
	case r.MaxBackoff < r.InitialBackoff:
		return fmt.Errorf("alerts.retry.max_backoff: %s is shorter than initial_backoff %s", r.MaxBackoff, r.InitialBackoff)
	case r.GiveUpAfter < r.MaxBackoff:
		return fmt.Errorf("alerts.retry.give_up_after: %s is shorter than max_backoff %s", r.GiveUpAfter, r.MaxBackoff)
	}
	names := map[string]int{}
	for i := range a.Channels {
		if err := a.Channels[i].validate(fmt.Sprintf("alerts.channels[%d]", i)); err != nil {
			return err
		}
		if j, dup := names[a.Channels[i].Name]; dup {
			return fmt.Errorf("alerts.channels[%d].name: %q is already used by alerts.channels[%d]", i, a.Channels[i].Name, j)
		}
		names[a.Channels[i].Name] = i
	}
	return nil
}

func (ch *Channel) validate(p string) error {
	if ch.Name == "" {
		return fmt.Errorf("%s.name: required", p)
	}
	if !channelName.MatchString(ch.Name) {
		return fmt.Errorf("%s.name: %q must be 1-64 letters, digits, '.', '_' or '-'", p, ch.Name)
	}
	if ch.MinLevel != "" && probe.Severity(ch.MinLevel).Rank() == 0 {
		return fmt.Errorf("%s.min_level: %q is not one of info, warning, critical", p, ch.MinLevel)
	}
	if err := ch.checkFieldsOfType(p); err != nil {
		return err
	}
	switch ch.Type {
	case TypeWebhook, TypeSlack:
		if ch.URL == "" {
			return fmt.Errorf("%s.url: required for type %s", p, ch.Type)
		}
		if err := checkHTTPURL(ch.URL); err != nil {
			return fmt.Errorf("%s.url: %w", p, err)
		}
	case TypePagerDuty:
		if ch.URL == "" {
			ch.URL = DefaultPagerDutyURL
		}
		if err := checkHTTPURL(ch.URL); err != nil {
			return fmt.Errorf("%s.url: %w", p, err)
		}
		if ch.RoutingKey == "" {
			return fmt.Errorf("%s.routing_key: required for type pagerduty (or routing_key_env)", p)
		}
	case TypeEmail:
		return ch.validateEmail(p)
	}
	return nil
}

// checkFieldsOfType reports a field set outside its type (for example
// "smtp" on a webhook): a mistake worth reporting.
func (ch *Channel) checkFieldsOfType(p string) error {
	var used map[string]bool
	switch ch.Type {
	case TypeWebhook:
		used = map[string]bool{"url": true, "secret": true, "secret_env": true}
	case TypeSlack:
		used = map[string]bool{"url": true}
	case TypePagerDuty:
		used = map[string]bool{"url": true, "routing_key": true, "routing_key_env": true}
	case TypeEmail:
		used = map[string]bool{"smtp": true, "from": true, "to": true, "username": true, "password": true, "password_env": true, "require_tls": true}
	case "":
		return fmt.Errorf("%s.type: required (webhook, slack, pagerduty or email)", p)
	default:
		return fmt.Errorf("%s.type: %q is not one of webhook, slack, pagerduty, email", p, ch.Type)
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"url", ch.URL != ""},
		{"secret", ch.Secret != "" && ch.SecretEnv == ""},
		{"secret_env", ch.SecretEnv != ""},
		{"routing_key", ch.RoutingKey != "" && ch.RoutingKeyEnv == ""},
		{"routing_key_env", ch.RoutingKeyEnv != ""},
		{"smtp", ch.SMTP != ""},
		{"from", ch.From != ""},
		{"to", len(ch.To) > 0},
		{"username", ch.Username != ""},
		{"password", ch.Password != "" && ch.PasswordEnv == ""},
		{"password_env", ch.PasswordEnv != ""},
		{"require_tls", ch.RequireTLS},
	} {
		if f.set && !used[f.name] {
			return fmt.Errorf("%s.%s: not used by type %s", p, f.name, ch.Type)
		}
	}
	return nil
}

func (ch *Channel) validateEmail(p string) error {
	if ch.SMTP == "" {
		return fmt.Errorf("%s.smtp: required for type email (host:port, e.g. smtp.example.com:587)", p)
	}
	host, port, err := net.SplitHostPort(ch.SMTP)
	if err != nil || host == "" {
		return fmt.Errorf("%s.smtp: %q must be host:port, e.g. smtp.example.com:587", p, ch.SMTP)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%s.smtp: port %q must be 1-65535", p, port)
	}
	if err := checkAddress(ch.From); err != nil {
		return fmt.Errorf("%s.from: %w", p, err)
	}
	if len(ch.To) == 0 {
		return fmt.Errorf("%s.to: at least one address required", p)
	}
	for j, to := range ch.To {
		if err := checkAddress(to); err != nil {
			return fmt.Errorf("%s.to[%d]: %w", p, j, err)
		}
	}
	if ch.Password != "" && ch.Username == "" {
		return fmt.Errorf("%s.username: required when a password is given", p)
	}
	if ch.Username != "" && ch.Password == "" {
		return fmt.Errorf("%s.password: required when a username is given (or password_env)", p)
	}
	return nil
}

func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an http(s) URL")
	}
	if u.Hostname() == "" {
		return errors.New("must be an http(s) URL with a host")
	}
	return nil
}

func checkAddress(s string) error {
	if s == "" {
		return errors.New("required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%q is not an email address", s)
	}
	if strings.ContainsAny(a.Address, "\r\n<>") {
		return fmt.Errorf("%q is not an email address", s)
	}
	return nil
}
