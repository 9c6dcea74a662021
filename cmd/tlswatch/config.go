package main

import (
	"time"

	"github.com/tlswatch/tlswatch/store"
)

// Config is what flags and environment turn into; run() and its subcommands
// take it instead of reading flags themselves.
type Config struct {
	DBPath      string        // --db; default under the user's state dir
	CAFiles     []string      // --ca-file (repeatable), env TLSWATCH_CA_FILE
	HTTPAddr    string        // serve --http ADDR; empty means stdio
	Token       string        // --token, env TLSWATCH_TOKEN
	MinInterval time.Duration // --min-interval: floor for watch schedules
	Version     string

	ConfigPath   string   // serve --config: operator file (alert channels)
	MetricsAddr  string   // serve --metrics ADDR: Prometheus /metrics on its own listener (stdio mode)
	DenyPrivate  bool     // serve --deny-private: refuse loopback and private ranges too
	AllowCIDRs   []string // serve --allow-cidr (repeatable): always allowed, wins over denies
	DenyCIDRs    []string // serve --deny-cidr (repeatable): refused
	ClientCerts  []string // --client-cert NAME=CERT,KEY (repeatable): mTLS identities a check or watch may name
	MetricsToken string   // serve --metrics-token, env TLSWATCH_METRICS_TOKEN: bearer token of the --metrics listener
	Limits       Limits   // serve --max-sessions, --max-subscriptions, --max-connections, --max-message-bytes
	MCPTokens    []string // serve --mcp-token NAME=ENV_VAR or NAME=@FILE (repeatable): bearer tokens check_mcp_endpoint may name

	ReadOnly               bool     // serve --read-only: only read tools, whatever the auth mode
	AuthIssuers            []string // serve --auth-issuer (repeatable): OAuth resource-server mode
	PublicURL              string   // serve --public-url: the canonical URI behind a proxy
	AuthIntrospect         string   // serve --auth-introspect: RFC 7662 endpoint for opaque tokens
	IntrospectClientID     string   // from the env var --auth-introspect-client-id-env names
	IntrospectClientSecret string   // from the env var --auth-introspect-client-secret-env names

	BackupEvery time.Duration   // serve --backup-every: automatic backups while serve owns the database; 0 off
	BackupKeep  int             // serve --backup-keep: backups kept
	BackupDir   string          // serve --backup-dir: where backups go; default next to the database
	Retention   store.Retention // serve --retention: how long history is kept (zero fields: the defaults)

	ACMEDirectories []string    // --acme-directory [MATCH=]URL (repeatable): private CAs asked for renewal windows
	DNSServer       string      // --dns-server HOST:PORT: the resolver of CAA lookups
	Etcd            *EtcdConfig // --etcd (or TLSWATCH_ETCD): watches in etcd, not in --db; nil for the embedded default

	MaxWatches           int // serve --max-watches: watches in total
	MaxWatchesPerSubject int // serve --max-watches-per-subject: watches one OAuth subject, or one MCP session, creates
}
