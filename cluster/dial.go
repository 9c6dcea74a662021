package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tlswatch/tlswatch/probe"
)

// Environment variables read by FromEnv: the endpoints (as --etcd takes
// them) and the credentials, which never go on a command line where `ps`
// would show them.
const (
	EnvEndpoints = "TLSWATCH_ETCD"
	EnvUser      = "TLSWATCH_ETCD_USER"
	EnvPassword  = "TLSWATCH_ETCD_PASSWORD"
)

// DefaultDialTimeout bounds the first connection to etcd.
const DefaultDialTimeout = 5 * time.Second

// ClientOptions say how to reach etcd, the way etcd's own clients take them
// (etcdctl --endpoints, --cacert, --cert, --key, --user).
type ClientOptions struct {
	Endpoints []string // http(s)://host:port or host:port
	CAFile    string   // PEM roots for the servers' certificates (--etcd-ca)
	CertFile  string   // client certificate, PEM (--etcd-cert)
	KeyFile   string   // its key, PEM (--etcd-key)
	Username  string
	Password  string
	// DialTimeout bounds the first connection; DefaultDialTimeout when 0.
	DialTimeout time.Duration
}

// FromEnv fills what o leaves empty from the environment.
func (o ClientOptions) FromEnv(getenv func(string) string) (ClientOptions, error) {
	if len(o.Endpoints) == 0 {
		if v := getenv(EnvEndpoints); v != "" {
			eps, err := ParseEndpoints(v)
			if err != nil {
				return o, &probe.FieldError{Field: EnvEndpoints, Reason: strings.TrimPrefix(err.Error(), "--etcd: ")}
			}
			o.Endpoints = eps
		}
	}
	if o.Username == "" {
		o.Username = getenv(EnvUser)
	}
	if o.Password == "" {
		o.Password = getenv(EnvPassword)
	}
	return o, nil
}

// ParseEndpoints reads --etcd: a comma-separated list of http://host:port,
// https://host:port or host:port.
func ParseEndpoints(s string) ([]string, error) {
	var eps []string
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		ep, err := parseEndpoint(raw)
		if err != nil {
			return nil, &probe.FieldError{Field: "--etcd", Reason: err.Error()}
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, &probe.FieldError{Field: "--etcd", Reason: "no endpoint given"}
	}
	return eps, nil
}

func parseEndpoint(raw string) (string, error) {
	hostport := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("%q: %v", raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", fmt.Errorf("%q: scheme must be http or https", raw)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return "", fmt.Errorf("%q: only scheme://host:port, no path, query or user", raw)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("%q: want host:port (etcd's client port is usually 2379)", raw)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: port %q out of range 1-65535", raw, port)
	}
	if host == "" {
		return "", fmt.Errorf("%q: empty host", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// tlsConfig builds the client TLS configuration, nil when no endpoint is
// https and no TLS file is given (plain http, as a loopback etcd often is).
func (o ClientOptions) tlsConfig() (*tls.Config, error) {
	https := false
	for _, ep := range o.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if !https && o.CAFile == "" && o.CertFile == "" && o.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, &probe.FieldError{Field: "--etcd-ca", Reason: err.Error()}
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &probe.FieldError{Field: "--etcd-ca", Reason: o.CAFile + ": no PEM certificate in it"}
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		field := "--etcd-key"
		if o.CertFile == "" {
			field = "--etcd-cert"
		}
		return nil, &probe.FieldError{Field: field, Reason: "--etcd-cert and --etcd-key go together"}
	}
	if o.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, &probe.FieldError{Field: "--etcd-cert", Reason: err.Error()}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Dial connects to etcd and checks, within the dial timeout, that it answers
// (and accepts the credentials), so a wrong address or password is reported
// at start rather than as endless retries.
func Dial(ctx context.Context, o ClientOptions) (*clientv3.Client, error) {
	if len(o.Endpoints) == 0 {
		return nil, &probe.FieldError{Field: "--etcd", Reason: "no endpoint given (or set " + EnvEndpoints + ")"}
	}
	if (o.Username == "") != (o.Password == "") {
		return nil, &probe.FieldError{Field: EnvPassword, Reason: EnvUser + " and " + EnvPassword + " go together"}
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		TLS:         tlsCfg,
		Username:    o.Username,
		Password:    o.Password,
		// The client's own retries log at warn level on every hiccup; the
		// node logs what an operator needs (lost lease, outage, return).
		Logger: zap.NewNop(),
		// Dead connections are noticed within seconds, well inside a lease.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	cctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, "tlswatch-ping", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", o.DialTimeout)
		}
		return nil, fmt.Errorf("cluster: etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	return cli, nil
}
