package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/cluster"
	"github.com/tlswatch/tlswatch/cluster/etcdstore"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// EtcdConfig is where the watches live when they are shared through etcd.
type EtcdConfig struct {
	Client cluster.ClientOptions
	Keys   cluster.Keyspace
	Node   string // serve --node: the node's name (default: the host name)
}

// etcdFlags are the shared flags that put the watches in etcd, named as
// etcd's own clients name them.
type etcdFlags struct {
	endpoints, prefix, ca, cert, key string
}

func (f *etcdFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.endpoints, "etcd", f.endpoints, "keep the watches in etcd at these `URLs` (comma-separated; env TLSWATCH_ETCD) instead of --db")
	fs.StringVar(&f.prefix, "etcd-prefix", f.prefix, "etcd key `prefix` of this tlswatch cluster (default "+cluster.DefaultPrefix+")")
	fs.StringVar(&f.ca, "etcd-ca", f.ca, "PEM `file` of the CA that signed etcd's server certificates")
	fs.StringVar(&f.cert, "etcd-cert", f.cert, "PEM client certificate `file` for etcd (with --etcd-key)")
	fs.StringVar(&f.key, "etcd-key", f.key, "PEM key `file` of --etcd-cert")
}

// config is the etcd configuration the flags and the environment give; nil
// when neither names endpoints. Credentials come from TLSWATCH_ETCD_USER
// and TLSWATCH_ETCD_PASSWORD only, never from the command line.
func (f *etcdFlags) config(getenv func(string) string) (*EtcdConfig, error) {
	var o cluster.ClientOptions
	if f.endpoints != "" {
		eps, err := cluster.ParseEndpoints(f.endpoints)
		if err != nil {
			return nil, err
		}
		o.Endpoints = eps
	}
	o, err := o.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	if len(o.Endpoints) == 0 {
		for name, v := range map[string]string{"--etcd-prefix": f.prefix, "--etcd-ca": f.ca, "--etcd-cert": f.cert, "--etcd-key": f.key} {
			if v != "" {
				return nil, fmt.Errorf("%s: needs --etcd (or %s)", name, cluster.EnvEndpoints)
			}
		}
		return nil, nil
	}
	o.CAFile, o.CertFile, o.KeyFile = f.ca, f.cert, f.key
	keys, err := cluster.NewKeyspace(f.prefix)
	if err != nil {
		return nil, err
	}
	return &EtcdConfig{Client: o, Keys: keys}, nil
}

// nodeName is serve's --node, or the host name.
func nodeName(flagValue string) (string, error) {
	name := flagValue
	if name == "" {
		if name = shortHost(); name == "" {
			return "", errors.New("--node: no host name to default to; give --node NAME")
		}
	}
	if err := cluster.CheckNode(name); err != nil {
		return "", err
	}
	return name, nil
}

// joinEtcd connects to etcd and opens the watch service there: a cluster
// node for serve (ecfg.NoScheduler false), a command-line process that
// only reads, adds and removes otherwise. The close func also closes the
// connection.
func joinEtcd(ctx context.Context, cfg *EtcdConfig, ecfg watch.Config, alerts watch.Alerter, logger *slog.Logger) (*etcdstore.Service, func(), error) {
	cli, err := cluster.Dial(ctx, cfg.Client)
	if err != nil {
		return nil, nil, err
	}
	name := cfg.Node
	if ecfg.NoScheduler {
		// Not a node: its Adds' first probes say where they ran.
		name, ecfg.Node = "", "cli@"+shortHost()
	}
	svc, err := etcdstore.Join(ctx, etcdstore.NodeConfig{Client: cli, Keys: cfg.Keys, Name: name, Engine: ecfg, Alerts: alerts, Logger: logger})
	if err != nil {
		cli.Close()
		return nil, nil, fmt.Errorf("--etcd: %w", err)
	}
	return svc, func() {
		svc.Close()
		cli.Close()
	}, nil
}

var errNoEtcd = errors.New("--etcd: required (or set " + cluster.EnvEndpoints + ")")

// runMigrate moves the watches of an embedded database into etcd.
func runMigrate(ctx context.Context, c *cli, args []string) (int, error) {
	fs := newFlagSet("migrate", c)
	from := fs.String("from-db", "", "the database `file` to move (stop the serve that uses it first)")
	asJSON := fs.Bool("json", false, "print what was moved as JSON")
	if _, err := c.parse(fs, args, ""); err != nil {
		return exitUnknown, err
	}
	if *from == "" {
		return exitUnknown, errors.New("--from-db: required: the database file to move")
	}
	cfg, err := c.config(false)
	if err != nil {
		return exitUnknown, err
	}
	if cfg.Etcd == nil {
		return exitUnknown, errNoEtcd
	}
	if _, err := os.Stat(*from); err != nil {
		return exitUnknown, fmt.Errorf("--from-db: %v", err)
	}
	db, err := store.Open(*from, store.Options{Timeout: time.Second})
	if err != nil {
		return exitUnknown, fmt.Errorf("--from-db %s: %w", *from, err)
	}
	defer db.Close()
	cli, err := cluster.Dial(ctx, cfg.Etcd.Client)
	if err != nil {
		return exitUnknown, err
	}
	defer cli.Close()
	stats, err := etcdstore.Migrate(ctx, db, cli, cfg.Etcd.Keys)
	if err != nil {
		return exitUnknown, err
	}
	if *asJSON {
		return exitOK, writeJSON(c.stdout, stats)
	}
	fmt.Fprintf(c.stdout, "moved %d watches (%d probe results, %d alert states), %d queued alerts, %d marks and %d alert feed entries into %s\n",
		stats.Watches, stats.Reports, stats.Alerts, stats.Outbox, stats.Marks, stats.Feed, cfg.Etcd.Keys.Prefix())
	if len(stats.Skipped) > 0 {
		fmt.Fprintf(c.stdout, "skipped %d already there: %s\n", len(stats.Skipped), strings.Join(stats.Skipped, " "))
	}
	return exitOK, nil
}

// shortHost is the host name up to its first dot ("" when unknown).
func shortHost() string {
	h, _ := os.Hostname()
	return strings.SplitN(h, ".", 2)[0]
}
