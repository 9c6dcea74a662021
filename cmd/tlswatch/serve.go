package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/auth"
	"github.com/tlswatch/tlswatch/metrics"
	"github.com/tlswatch/tlswatch/tools"
	"github.com/tlswatch/tlswatch/watch"
)

// HTTP transport limits. Sessions with no request in progress for
// sessionIdleTTL are dropped with their subscriptions (an open GET stream is
// a request in progress); the heartbeat on a GET stream keeps proxies from
// closing it and finds a client that went away.
const (
	sessionIdleTTL    = 30 * time.Minute
	heartbeatInterval = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	maxBodyBytes      = 4 << 20
	shutdownGrace     = 5 * time.Second
	endpointPath      = "/mcp"
	metricsPath       = "/metrics"
)

// serve runs the MCP server until ctx ends (SIGINT/SIGTERM in main) or, on
// stdio, until stdin closes. On stdio nothing but protocol reaches stdout;
// every log line goes to stderr.
func serve(ctx context.Context, cfg Config, stdin io.Reader, stdout, stderr io.Writer) error {
	pr, err := prober(cfg)
	if err != nil {
		return err
	}
	creds, err := loadCredentials(cfg, pr.ClientCerts)
	if err != nil {
		return err
	}
	stderr = creds.secrets.Writer(stderr) // no log line shows a secret, whatever a server echoes
	// MCP-level watches name a token; this process resolves the name when
	// it probes them.
	pr.Tokens, pr.Redact = creds.mcpTokens, creds.secrets
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Limits = cfg.Limits.withDefaults(raiseNoFile())
	pr.Logger = logger.With("component", "watch")
	alerts, err := alertDispatcher(cfg, pr.Base, logger)
	if err != nil {
		return err
	}
	deps := tools.Deps{ProbeOptions: pr.Base, ClientCerts: pr.ClientCerts, MCPTokens: creds.mcpTokens, Redact: creds.secrets, Logger: logger}
	svc, closeWatch, err := openWatch(ctx, cfg, pr, alerts, logger)
	if _, bad := dbAdvice(err); bad {
		// A damaged or foreign file is refused, not served around: the
		// operator must act, and the first write could make it worse.
		return err
	}
	if err != nil {
		// The probing tools still work; the watch tools say why they do not.
		logger.Warn("watching is not available", "db", cfg.DBPath, "err", err)
		deps.WatchError = err
	} else {
		deps.Watch = svc
		defer closeWatch()
	}

	srv := tools.NewServer(deps, tools.ServerOptions{Name: "tlswatch", Version: cfg.Version, ReadOnly: cfg.ReadOnly,
		MaxSubscriptions: cfg.Limits.MaxSubscriptions})
	defer srv.Close()

	if cfg.MetricsAddr != "" && deps.Watch != nil {
		stopMetrics, err := serveMetrics(ctx, cfg, deps.Watch, logger, stderr)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	if cfg.HTTPAddr == "" {
		return serveStdio(ctx, srv, cfg.Limits, stdin, stdout, logger)
	}
	return serveHTTP(ctx, cfg, srv, deps.Watch, pr.Base.Roots, logger, stderr)
}

// serveStdio speaks MCP on stdin/stdout until stdin closes or ctx ends.
func serveStdio(ctx context.Context, srv *tools.Server, lim Limits, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	t := &stdioTransport{srv: srv.MCPServer, refuse: srv.ResourceRequestError, logger: logger, maxLine: int(lim.MaxMessageBytes)}
	err := t.serve(ctx, stdin, stdout)
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("stdio: %w", err)
}

// serveHTTP serves streamable HTTP at /mcp until ctx ends, then shuts down
// gracefully.
func serveHTTP(ctx context.Context, cfg Config, srv *tools.Server, watches watch.Service, roots *x509.CertPool, logger *slog.Logger, stderr io.Writer) error {
	addr, err := listenAddr("--http", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	rawLn, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http %s: %w", cfg.HTTPAddr, err)
	}
	ln := newConnLimiter(rawLn, cfg.Limits.MaxConnections, logger)
	authn, rs, err := newAuthenticator(ctx, cfg, roots, ln.Addr(), logger)
	if err != nil {
		ln.Close()
		return err
	}
	if rs != nil {
		defer rs.Close()
	}
	if !isLoopbackAddr(ln.Addr()) && cfg.Token == "" && rs == nil {
		warnUnprotected(stderr, ln.Addr())
	}

	// Request contexts derive from base, so cancelling it ends long-lived
	// streams (GET listeners, subscriptions/listen) that http.Server.Shutdown
	// would otherwise wait for.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	httpSrv := &http.Server{
		ConnState:         ln.ConnState,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	mcpHTTP, endpoint := newMCPEndpoint(srv, cfg.Limits, httpSrv, logger)
	sweeping := make(chan struct{})
	go func() {
		defer close(sweeping)
		endpoint.ids.expireIdle(base, sessionIdleTTL)
	}()
	defer func() { cancelBase(); <-sweeping }()
	mux := http.NewServeMux()
	limiter := newRateLimiter(rateLimitPerSecond, rateLimitBurst)
	maxBody := cfg.Limits.MaxMessageBytes
	mux.Handle(endpointPath, limiter.limit(guard(authn, maxBody, endpoint)))
	if watches != nil {
		// Prometheus scrapes the same listener; the token guards it too,
		// since the metrics name every watched target.
		mux.Handle(metricsPath, limiter.limit(hostGuard(guard(authn, maxBody, metrics.Handler(watches, logger)))))
	}
	if rs != nil {
		for _, p := range rs.MetadataPaths() {
			mux.Handle(p, limiter.limit(rs.MetadataHandler()))
		}
	}
	httpSrv.Handler = mux

	logger.Info("serving MCP over streamable HTTP", "url", "http://"+ln.Addr().String()+endpointPath, "auth", authMode(cfg), "read_only", cfg.ReadOnly)

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	cancelBase()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := mcpHTTP.Shutdown(sctx); err != nil {
		_ = httpSrv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// newMCPEndpoint is mcp-go's streamable HTTP server for srv with our
// session IDs (live from a successful initialize, capped, the idlest
// evicted, the idle swept by serveHTTP) behind mcpEndpoint, which enforces
// the session lifecycle and serves the sessions' standalone streams.
func newMCPEndpoint(srv *tools.Server, lim Limits, httpSrv *http.Server, logger *slog.Logger) (*server.StreamableHTTPServer, *mcpEndpoint) {
	ids := newSessionIDs(nil, lim.MaxSessions)
	ids.logger = logger
	srv.Hooks.AddAfterInitialize(func(ctx context.Context, _ any, _ *mcp.InitializeRequest, _ *mcp.InitializeResult) {
		if cs := server.ClientSessionFromContext(ctx); cs != nil {
			ids.confirm(cs.SessionID())
		}
	})
	mcpHTTP := server.NewStreamableHTTPServer(srv.MCPServer,
		server.WithEndpointPath(endpointPath),
		server.WithSessionIdManager(ids),
		server.WithStreamableHTTPLogger(logger),
		server.WithStreamableHTTPServer(httpSrv),
	)
	endpoint := &mcpEndpoint{sdk: mcpHTTP, ids: ids, flights: newFlights(), heartbeat: heartbeatInterval,
		refuse: srv.ResourceRequestError, logger: logger}
	ids.evict = endpoint.end
	srv.Subs.Route(endpoint)
	return mcpHTTP, endpoint
}

// warnUnprotected says loudly that anyone who reaches addr may use the
// server.
func warnUnprotected(stderr io.Writer, addr net.Addr) {
	fmt.Fprintf(stderr, "\n"+
		"WARNING: tlswatch is listening on %s, beyond loopback, WITHOUT a token.\n"+
		"WARNING: anyone who can reach this address can run probes from this host and add or remove watches.\n"+
		"WARNING: set --auth-issuer (OAuth) or --token (or TLSWATCH_TOKEN), or bind 127.0.0.1.\n\n", addr)
}

// listenAddr applies the loopback default: a bare port (":8931" or "8931")
// binds 127.0.0.1; binding every interface takes an explicit 0.0.0.0 or [::].
func listenAddr(flagName, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%s: address required (e.g. 127.0.0.1:8931)", flagName)
	}
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%s %s: %v", flagName, s, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

func isLoopbackAddr(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// guard is the HTTP security in front of the MCP handler: Origin
// validation (403), authentication from the headers alone (401), body size
// cap (413), then authorization, which may read the capped body (403).
// mcp-go's own DNS-rebinding check (Host header on loopback connections)
// stays on behind it.
//
// No body is read before the request is authenticated, and a refusal
// closes the connection: otherwise net/http reads up to 256 KiB of the
// unread body before it writes the answer, and a client that drips its
// body holds the connection (and a descriptor) for as long as it likes.
// Once authenticated, the body has readBodyTimeout to arrive.
func guard(authn auth.Authenticator, maxBody int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hasBody := r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
		if hasBody {
			w.Header().Set("Connection", "close")
		}
		if !originAllowed(r) {
			http.Error(w, "Forbidden: origin not allowed", http.StatusForbidden)
			return
		}
		if r = authn.Authenticate(w, r); r == nil {
			return
		}
		if r.ContentLength > maxBody {
			http.Error(w, "Request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if hasBody {
			r.Body = newDeadlineBody(w, http.MaxBytesReader(w, r.Body, maxBody), readBodyTimeout)
		}
		if !authn.Authorize(w, r) {
			return
		}
		if hasBody {
			w.Header().Del("Connection")
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody is a request body with a read deadline, lifted once the
// body has been read to its end: the response that follows may be a
// long-lived event stream, which net/http watches with a read on the same
// connection.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func newDeadlineBody(w http.ResponseWriter, body io.ReadCloser, d time.Duration) io.ReadCloser {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return body // a writer without deadlines (tests): the body as is
	}
	return &deadlineBody{ReadCloser: body, rc: rc}
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// originAllowed accepts requests without an Origin (non-browser clients),
// from a loopback origin (a local web client), and same-origin requests
// (Origin's host:port equals Host). A browser page anywhere else must not
// drive the server: that is the DNS-rebinding and CSRF defence the MCP
// transport specification asks for.
func originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes the opaque "null" origin
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	return strings.EqualFold(u.Host, r.Host)
}
