// Command tlswatch diagnoses and watches the TLS health of servers, first of
// all remote MCP servers over HTTPS. `tlswatch serve` is the MCP server;
// check, watch, expiring and scan give a person at a terminal the same engine.
//
// Exit codes follow the monitoring-plugin convention (Nagios, Icinga, Sensu):
// 0 ok, 1 warning, 2 critical or down, 3 unknown (bad input, internal error).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// without it the module version from the build info is used.
var version string

// Exit codes (DESIGN.md).
const (
	exitOK       = 0
	exitWarning  = 1
	exitCritical = 2 // critical or down
	exitUnknown  = 3 // bad input, internal error
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is what every subcommand gets: the streams and the shared flags.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	shared         sharedFlags
}

// command is one subcommand. It returns the exit code; an error means exit
// 3 and is printed as one line on stderr.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) (int, error)
}

// commands is the table of subcommands. A function, not a variable: the
// help command reads the table, which a variable's initializer could not
// refer to.
func commands() []command {
	return []command{
		{"serve", "run the MCP server (stdio, or streamable HTTP with --http)", runServe},
		{"check", "probe one target and print a report", runCheck},
		{"watch", "add, list or remove watched endpoints (watch add|ls|rm)", runWatch},
		{"expiring", "list watches expiring soon, expired or down", runExpiring},
		{"scan", "probe many targets from a file or stdin", runScan},
		{"db", "check, back up, restore, measure or compact the database (db check|backup|restore|stats|compact)", runDB},
		{"migrate", "move the watches of a database into etcd (migrate --from-db PATH --etcd URL)", runMigrate},
		{"version", "print the version", runVersion},
		{"help", "show help for a command", runHelp},
	}
}

// run is main without the process: it parses args, dispatches and returns
// the exit code. Tests call it like any function.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}

	// Shared flags may come before the subcommand too: tlswatch --db x watch ls.
	fs := newFlagSet("tlswatch", c)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c.flagFailed(fs, err)
	}
	if *showVersion {
		code, _ := runVersion(ctx, c, nil)
		return code
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, mainUsage())
		return exitUnknown
	}
	name := rest[0]
	for _, cmd := range commands() {
		if cmd.name == name {
			code, err := cmd.run(ctx, c, rest[1:])
			if err != nil {
				return c.fail(err)
			}
			return code
		}
	}
	return c.fail(fmt.Errorf("unknown command %q (see tlswatch help)", name))
}

// fail prints err as one line and returns exitUnknown. errHelpShown means
// the usage was printed on request: exit 0.
func (c *cli) fail(err error) int {
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	if line, ok := dbAdvice(err); ok {
		fmt.Fprintf(c.stderr, "tlswatch: %s\n", line)
		return exitUnknown
	}
	fmt.Fprintf(c.stderr, "tlswatch: %s\n", oneLine(err.Error()))
	return exitUnknown
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

var errHelpShown = errors.New("help shown")

// flagFailed handles an error from FlagSet.Parse: -h prints the usage on
// stdout (exit 0); anything else is a one-line error (exit 3).
func (c *cli) flagFailed(fs *flag.FlagSet, err error) int {
	return c.fail(c.flagError(fs, err))
}

func (c *cli) flagError(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.stdout)
		fs.Usage()
		return errHelpShown
	}
	if fs.Name() == "tlswatch" {
		return err
	}
	return fmt.Errorf("%s: %w", fs.Name(), err)
}

// sharedFlags are accepted by every command, before or after its name.
type sharedFlags struct {
	db          string
	caFiles     stringList
	minInterval string
	acmeDirs    stringList
	dnsServer   string
	etcd        etcdFlags
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// newFlagSet returns a FlagSet that reports errors instead of exiting or
// printing, with the shared flags bound to c.shared.
func newFlagSet(name string, c *cli) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.shared.db, "db", c.shared.db, "bbolt database `path` (default $XDG_STATE_HOME/tlswatch/tlswatch.db or ~/.local/state/tlswatch/tlswatch.db)")
	fs.Var(&c.shared.caFiles, "ca-file", "PEM `file` of roots added to the trust store (repeatable; env TLSWATCH_CA_FILE, a path list)")
	fs.StringVar(&c.shared.minInterval, "min-interval", c.shared.minInterval, "floor for watch schedules, a Go `duration`")
	fs.Var(&c.shared.acmeDirs, "acme-directory", "ACME directory `URL` of a private CA to ask for renewal windows (ARI), for the certificates no known CA claims; ISSUER=URL or aki:HEX=URL for the certificates of one issuer (repeatable)")
	fs.StringVar(&c.shared.dnsServer, "dns-server", c.shared.dnsServer, "DNS server `host:port` for CAA lookups (default: the first nameserver of /etc/resolv.conf)")
	c.shared.etcd.bind(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usageFor(fs)) }
	return fs
}

// parseArgs parses flags anywhere among the positional arguments, so that
// `tlswatch check host --json` works, and returns the positionals. After
// "--" everything is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parse parses a command's flags and its positional argument. With missing
// empty the command takes none; otherwise it takes exactly one, and missing
// is the error when it is absent.
func (c *cli) parse(fs *flag.FlagSet, args []string, missing string) (string, error) {
	pos, err := parseArgs(fs, args)
	switch {
	case err != nil:
		return "", c.flagError(fs, err)
	case missing == "" && len(pos) > 0:
		return "", fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[0])
	case missing == "":
		return "", nil
	case len(pos) == 0:
		return "", errors.New(missing)
	case len(pos) > 1:
		return "", fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[1])
	}
	return pos[0], nil
}

// config turns the shared flags and the environment into a Config. needDB
// resolves the database path and creates its directory (0700), unless the
// watches are in etcd (--etcd or TLSWATCH_ETCD).
func (c *cli) config(needDB bool) (Config, error) {
	cfg := Config{Version: buildVersion(), CAFiles: c.caFiles(),
		ACMEDirectories: append([]string(nil), c.shared.acmeDirs...), DNSServer: c.shared.dnsServer}
	if c.shared.minInterval != "" {
		d, err := parseDuration("--min-interval", c.shared.minInterval)
		if err != nil {
			return cfg, err
		}
		cfg.MinInterval = d
	}
	var err error
	if cfg.Etcd, err = c.shared.etcd.config(os.Getenv); err != nil {
		return cfg, err
	}
	if needDB && cfg.Etcd == nil {
		path, err := dbPath(c.shared.db)
		if err != nil {
			return cfg, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return cfg, fmt.Errorf("--db: %v", err)
		}
		cfg.DBPath = path
	}
	return cfg, nil
}

// caFiles: --ca-file flags when given, else TLSWATCH_CA_FILE (a path list).
func (c *cli) caFiles() []string {
	if len(c.shared.caFiles) > 0 {
		return append([]string(nil), c.shared.caFiles...)
	}
	var files []string
	for _, f := range filepath.SplitList(os.Getenv("TLSWATCH_CA_FILE")) {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

// dbPath is --db, or tlswatch.db under the user's state directory.
func dbPath(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "tlswatch", "tlswatch.db"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("--db: no default location (%v); pass --db PATH", err)
	}
	return filepath.Join(home, ".local", "state", "tlswatch", "tlswatch.db"), nil
}

// parseDuration parses a positive Go duration, naming the flag on error.
func parseDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: invalid duration %q (use a Go duration such as 3s or 3000ms)", field, s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: must be positive, got %s", field, s)
	}
	return d, nil
}

func runVersion(_ context.Context, c *cli, args []string) (int, error) {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprintln(c.stdout, "usage: tlswatch version")
		return exitOK, nil
	}
	fmt.Fprintf(c.stdout, "tlswatch %s\n", buildVersion())
	return exitOK, nil
}

// buildVersion is -X main.version, else the module version (set by
// `go install ...@v1.2.3`), else the VCS revision, else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "devel-" + rev + dirty
	}
	return "devel"
}

// runServe parses serve's flags into Config and hands over to serve
// (serve.go), which owns the transports.
func runServe(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("serve", c)
	httpAddr := fs.String("http", "", "serve streamable HTTP at /mcp on `addr` (e.g. 127.0.0.1:8931) instead of stdio")
	token := fs.String("token", "", "require Authorization: Bearer `token` over HTTP (env TLSWATCH_TOKEN)")
	configPath := fs.String("config", "", "operator config `file` (YAML): alert channels (webhook, Slack, PagerDuty, email)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics on `addr` (with --http it is also on the MCP listener)")
	denyPrivate := fs.Bool("deny-private", false, "refuse loopback and private addresses too (for shared deployments)")
	var allowCIDRs, denyCIDRs stringList
	fs.Var(&allowCIDRs, "allow-cidr", "always allow this `cidr` (repeatable; wins over every deny)")
	fs.Var(&denyCIDRs, "deny-cidr", "refuse this `cidr` (repeatable)")
	var clientCerts stringList
	fs.Var(&clientCerts, "client-cert", "load an mTLS client certificate that check_tls, inspect_chain, check_mcp_endpoint and watch_endpoint may present by name: `NAME=CERT,KEY` (PEM files; repeatable)")
	var mcpTokens stringList
	fs.Var(&mcpTokens, "mcp-token", "load a bearer token that check_mcp_endpoint may send by name (token_name), so it never passes through the model: `NAME=ENV_VAR` or NAME=@FILE (repeatable)")
	readOnly := fs.Bool("read-only", false, "offer only the read tools: no watch_endpoint or unwatch_endpoint (stdio and HTTP)")
	metricsToken := fs.String("metrics-token", "", "require Authorization: Bearer `token` on the --metrics listener (env TLSWATCH_METRICS_TOKEN)")
	limits := limitFlags(fs)
	oauth := oauthFlags(fs)
	st := storageFlags(fs)
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	cfg, err := c.config(true)
	if err != nil {
		return exitUnknown, err
	}
	if err := st.apply(&cfg); err != nil {
		return exitUnknown, err
	}
	cfg.HTTPAddr = *httpAddr
	cfg.Token = *token
	cfg.ConfigPath = *configPath
	cfg.MetricsAddr = *metricsAddr
	cfg.DenyPrivate = *denyPrivate
	cfg.AllowCIDRs, cfg.DenyCIDRs = allowCIDRs, denyCIDRs
	cfg.ClientCerts = clientCerts
	cfg.MCPTokens = mcpTokens
	cfg.ReadOnly = *readOnly
	cfg.MetricsToken = *metricsToken
	if cfg.MetricsToken == "" {
		cfg.MetricsToken = os.Getenv("TLSWATCH_METRICS_TOKEN")
	}
	cfg.Limits = *limits
	if err := cfg.Limits.check(); err != nil {
		return exitUnknown, err
	}
	if err := serveAuthConfig(fs, oauth, &cfg, c.stderr); err != nil {
		return exitUnknown, err
	}
	tuneGC()
	if err := serve(ctx, cfg, c.stdin, c.stdout, c.stderr); err != nil {
		if _, ok := dbAdvice(err); ok {
			return exitUnknown, err
		}
		return exitUnknown, fmt.Errorf("serve: %w", err)
	}
	return exitOK, nil
}

// storageOpts are serve's flags about the watches' storage: backups, node,
// caps and history retention.
type storageOpts struct {
	backupEvery, backupDir, node, retention *string
	backupKeep, maxWatches, maxPerSubject   *int
}

func storageFlags(fs *flag.FlagSet) *storageOpts {
	return &storageOpts{
		backupEvery:   fs.String("backup-every", store.DefaultBackupEvery.String(), "back the database up this often while this process owns it, a Go `duration` (0: never)"),
		backupKeep:    fs.Int("backup-keep", store.DefaultBackupKeep, "keep this many automatic `backups`, removing the oldest"),
		backupDir:     fs.String("backup-dir", "", "write backups in this `directory` (default: next to the database)"),
		node:          fs.String("node", "", "with --etcd: this node's `name`, unique in the cluster (default: the host name)"),
		maxWatches:    fs.Int("max-watches", watch.DefaultMaxWatches, "refuse a new watch beyond this `number` of watches in total"),
		maxPerSubject: fs.Int("max-watches-per-subject", watch.DefaultMaxWatchesPerSubject, "refuse a new watch beyond this `number` created by one OAuth subject, or without OAuth by one MCP session"),
		retention:     fs.String("retention", "", "how long history is kept, as `kind=period,...`: raw (samples), hour, day, agg (both), changes (Reports stored at a change), size (a budget for the file, e.g. 2GB) (default "+store.DefaultRetention.String()+")"),
	}
}

// apply checks the flags and sets them in cfg.
func (o *storageOpts) apply(cfg *Config) error {
	for name, n := range map[string]int{"--max-watches": *o.maxWatches, "--max-watches-per-subject": *o.maxPerSubject} {
		if n < 1 {
			return fmt.Errorf("%s: must be at least 1, got %d", name, n)
		}
	}
	var err error
	if cfg.Etcd != nil {
		if cfg.Etcd.Node, err = nodeName(*o.node); err != nil {
			return err
		}
	} else if *o.node != "" {
		return fmt.Errorf("--node: needs --etcd (or %s)", cluster.EnvEndpoints)
	}
	if cfg.BackupEvery, err = parseBackupEvery(*o.backupEvery); err != nil {
		return err
	}
	if *o.backupKeep < 1 {
		return fmt.Errorf("--backup-keep: must be at least 1, got %d", *o.backupKeep)
	}
	cfg.BackupKeep, cfg.BackupDir = *o.backupKeep, *o.backupDir
	cfg.MaxWatches, cfg.MaxWatchesPerSubject = *o.maxWatches, *o.maxPerSubject
	cfg.Retention, err = store.ParseRetention("--retention", *o.retention)
	return err
}

// oauthOpts are serve's OAuth flags. Client credentials for introspection
// come from environment variables (the flags name them): a secret on the
// command line would show in every process listing.
type oauthOpts struct {
	issuers                   stringList
	publicURL, introspect     string
	clientIDEnv, clientSecEnv string
}

func oauthFlags(fs *flag.FlagSet) *oauthOpts {
	o := &oauthOpts{}
	fs.Var(&o.issuers, "auth-issuer", "accept OAuth access tokens from the authorization server with this issuer `URL` (repeatable; https, or http on loopback); --http only")
	fs.StringVar(&o.publicURL, "public-url", "", "the `URL` clients use for /mcp behind a proxy: the audience tokens must carry (default http://ADDR/mcp as served)")
	fs.StringVar(&o.introspect, "auth-introspect", "", "verify opaque tokens at this RFC 7662 introspection `URL`")
	fs.StringVar(&o.clientIDEnv, "auth-introspect-client-id-env", "TLSWATCH_INTROSPECT_CLIENT_ID", "environment `variable` holding the introspection client id")
	fs.StringVar(&o.clientSecEnv, "auth-introspect-client-secret-env", "TLSWATCH_INTROSPECT_CLIENT_SECRET", "environment `variable` holding the introspection client secret")
	return o
}

// serveAuthConfig checks how serve authenticates and fills cfg. An empty
// --token is an error, not "no auth"; --token and --auth-issuer exclude
// each other; the OAuth flags need --auth-issuer; over stdio they are
// ignored, as the MCP authorization specification says.
func serveAuthConfig(fs *flag.FlagSet, o *oauthOpts, cfg *Config, stderr io.Writer) error {
	tokenSet := false
	fs.Visit(func(f *flag.Flag) { tokenSet = tokenSet || f.Name == "token" })
	if tokenSet && strings.TrimSpace(cfg.Token) == "" {
		return errors.New("--token: empty; give a token, or leave --token out to serve without one (loopback only)")
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("TLSWATCH_TOKEN")
	}
	cfg.AuthIssuers, cfg.PublicURL, cfg.AuthIntrospect = o.issuers, o.publicURL, o.introspect
	switch {
	case len(o.issuers) > 0 && cfg.Token != "":
		return errors.New("--auth-issuer: cannot be combined with --token (or TLSWATCH_TOKEN): choose OAuth or a static token")
	case len(o.issuers) == 0 && o.publicURL != "":
		return errors.New("--public-url: needs --auth-issuer")
	case len(o.issuers) == 0 && o.introspect != "":
		return errors.New("--auth-introspect: needs --auth-issuer")
	}
	if len(o.issuers) > 0 && cfg.HTTPAddr == "" {
		fmt.Fprintln(stderr, "tlswatch: --auth-issuer applies to --http only; stdio is not authenticated (the client launching tlswatch is trusted)")
		cfg.AuthIssuers, cfg.PublicURL, cfg.AuthIntrospect = nil, "", ""
	}
	if cfg.AuthIntrospect != "" {
		cfg.IntrospectClientID = os.Getenv(o.clientIDEnv)
		cfg.IntrospectClientSecret = os.Getenv(o.clientSecEnv)
		if cfg.IntrospectClientID == "" || cfg.IntrospectClientSecret == "" {
			return fmt.Errorf("--auth-introspect: set the client credentials in %s and %s", o.clientIDEnv, o.clientSecEnv)
		}
	}
	return nil
}
