// Package tools holds tlswatch's MCP surface: the tool, resource and prompt
// definitions and their handlers (mcp-go), and the subscription registry that
// turns watcher events into MCP notifications. Handlers are thin: decode,
// call probe or watch, shape the result. Nothing here dials a socket.
package tools

import (
	"log/slog"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/auth"
	"github.com/tlswatch/tlswatch/internal/redact"
	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Deps is what the handlers need. The zero value is usable: Probe defaults to
// probe.Run, Logger to a discarding logger, and a nil Watch makes the watch
// tools answer isError "watching is not available".
type Deps struct {
	// Probe runs one probe. Default probe.Run.
	Probe watch.ProbeFunc
	// InspectChain details a served chain. Default probe.InspectChain.
	InspectChain InspectFunc
	// AnalyzePEM analyses pasted certificates. Default probe.AnalyzePEM.
	AnalyzePEM AnalyzePEMFunc
	// MCPCheck checks an MCP endpoint. Default mcpcheck.Run.
	MCPCheck MCPCheckFunc
	// ProbeOptions are passed to every probe (Roots: system plus --ca-file).
	ProbeOptions probe.Options
	// ClientCerts are the operator's mTLS client certificates by name
	// (--client-cert NAME=CERT,KEY). Tools take a name (client_cert), never
	// a path; a watch records the files the name stands for.
	ClientCerts map[string]watch.ClientCert
	// MCPTokens are the operator's bearer tokens for protected MCP
	// endpoints by name (--mcp-token NAME=ENV_VAR or NAME=@FILE). Tools
	// take a name (token_name), so a token never passes through the model.
	MCPTokens map[string]string
	// Redact holds every secret the operator configured; it is hidden in
	// everything a tool or resource returns (redact.go).
	Redact *redact.Set
	// Watch is the watcher; nil when no database could be opened.
	Watch watch.Service
	// WatchError says why Watch is nil; the watch tools show it.
	WatchError error
	// Logger receives diagnostics (never stdout).
	Logger *slog.Logger
	// MaxScanTargets bounds scan_endpoints. Default 200.
	MaxScanTargets int
	// ScanConcurrency bounds the probes one scan_endpoints call runs at once.
	// Default 8.
	ScanConcurrency int
	// MaxConcurrentProbes bounds the probes all tool calls of this server
	// run at once (several scans, many agents); the rest wait. Default 32.
	MaxConcurrentProbes int
	// MaxProbesPerSession bounds the probes one client session runs at
	// once. Default 8.
	MaxProbesPerSession int

	limiter *probeLimiter // shared by every tool built from one withDefaults
}

const (
	defaultMaxScanTargets      = 200
	defaultScanConcurrency     = 8
	defaultMaxConcurrentProbes = 32
	defaultMaxProbesPerSession = 8
)

func (d Deps) withDefaults() Deps {
	if d.Probe == nil {
		d.Probe = probe.Run
	}
	if d.InspectChain == nil {
		d.InspectChain = probe.InspectChain
	}
	if d.AnalyzePEM == nil {
		d.AnalyzePEM = probe.AnalyzePEM
	}
	if d.MCPCheck == nil {
		d.MCPCheck = mcpcheck.Run
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxScanTargets <= 0 {
		d.MaxScanTargets = defaultMaxScanTargets
	}
	if d.ScanConcurrency <= 0 {
		d.ScanConcurrency = defaultScanConcurrency
	}
	if d.MaxConcurrentProbes <= 0 {
		d.MaxConcurrentProbes = defaultMaxConcurrentProbes
	}
	if d.MaxProbesPerSession <= 0 {
		d.MaxProbesPerSession = defaultMaxProbesPerSession
	}
	if d.limiter == nil {
		d.limiter = newProbeLimiter(d.MaxConcurrentProbes, d.MaxProbesPerSession)
	}
	return d
}

// Tool is one entry of the inventory: its static definition and its handler.
type Tool struct {
	Def     mcp.Tool
	Handler server.ToolHandlerFunc
}

// Resource is a static resource and its handler.
type Resource struct {
	Def     mcp.Resource
	Handler server.ResourceHandlerFunc
}

// ResourceTemplate is a resource template and its handler.
type ResourceTemplate struct {
	Def     mcp.ResourceTemplate
	Handler server.ResourceTemplateHandlerFunc
}

// AllTools is the one inventory of tools: what NewServer registers and what
// the tests iterate (golden schemas, annotations).
func AllTools(deps Deps) []Tool {
	d := deps.withDefaults()
	tools := []Tool{
		checkTLSTool(d),
		inspectChainTool(d),
		inspectCertificateTool(d),
		checkMCPEndpointTool(d),
		scanEndpointsTool(d),
		watchEndpointTool(d),
		unwatchEndpointTool(d),
		listWatchesTool(d),
		listExpiringTool(d),
		getHistoryTool(d),
	}
	for i := range tools {
		tools[i].Handler = d.redactTool(tools[i].Handler)
	}
	return tools
}

// readOnly reports whether a tool is annotated read-only; a tool without
// the annotation is taken to change state.
func readOnly(t Tool) bool {
	h := t.Def.Annotations.ReadOnlyHint
	return h != nil && *h
}

// ToolScopes maps every tool of the inventory to the OAuth scope calling it
// needs, from its ReadOnlyHint annotation: auth.ScopeRead for read-only
// tools, auth.ScopeWrite for the rest. Resources, prompts and every other
// method need auth.ScopeRead.
func ToolScopes() map[string]string {
	m := map[string]string{}
	for _, t := range AllTools(Deps{}) {
		m[t.Def.Name] = auth.ScopeWrite
		if readOnly(t) {
			m[t.Def.Name] = auth.ScopeRead
		}
	}
	return m
}

// AllResources is the inventory of static resources.
func AllResources(deps Deps) []Resource {
	d := deps.withDefaults()
	rs := []Resource{watchesResource(d), expiringResource(d), alertsResource(d)}
	for i := range rs {
		rs[i].Handler = d.redactResource(rs[i].Handler)
	}
	return rs
}

// AllResourceTemplates is the inventory of resource templates.
func AllResourceTemplates(deps Deps) []ResourceTemplate {
	d := deps.withDefaults()
	rs := append([]ResourceTemplate{watchResourceTemplate(d), alertsResourceTemplate(d)}, pagesTemplates(d)...)
	for i := range rs {
		rs[i].Handler = server.ResourceTemplateHandlerFunc(d.redactResource(server.ResourceHandlerFunc(rs[i].Handler)))
	}
	return rs
}

// ServerOptions tune NewServer.
type ServerOptions struct {
	Name    string // default "tlswatch"
	Version string // default "dev"
	// ReadOnly registers only the tools annotated read-only (serve
	// --read-only): the others are neither listed nor callable.
	ReadOnly bool
	// ValidateOutput makes mcp-go check every structuredContent against the
	// tool's outputSchema (tests turn it on so a drift fails loudly).
	ValidateOutput bool
	// MaxSubscriptions bounds the resources one session, or one
	// subscriptions/listen stream, subscribes to. Default 1000.
	MaxSubscriptions int
	// Extra are appended to the server options (tests, transports).
	Extra []server.ServerOption
}

// Server is the MCP server with its subscription registry. Notifier is what
// the watcher should be subscribed with.
type Server struct {
	*server.MCPServer
	Subs *Subscriptions
	// Hooks are the server's hooks; a transport may add its own before
	// serving (the SDK takes one Hooks value).
	Hooks *server.Hooks

	deps Deps
}

// NewServer builds the MCP server: every tool, resource and template of the
// inventories, the resources.subscribe/listChanged and logging capabilities,
// and the hooks that keep the subscription registry. When deps.Watch is set
// the registry is subscribed to it; call Close to unsubscribe.
func NewServer(deps Deps, opts ServerOptions) *Server {
	d := deps.withDefaults()
	if opts.Name == "" {
		opts.Name = "tlswatch"
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	hooks := &server.Hooks{}
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = defaultMaxSubscriptions
	}
	subs := newSubscriptions(d.Logger, opts.MaxSubscriptions)
	subs.secrets = d.Redact
	subs.install(hooks)
	d.installResourceList(hooks)

	sopts := []server.ServerOption{
		server.WithToolCapabilities(false),
		server.WithPromptCapabilities(false),
		server.WithResourceCapabilities(true, true),
		server.WithLogging(),
		server.WithHooks(hooks),
		server.WithRecovery(),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(completions{d}),
		server.WithResourceCompletionProvider(completions{d}),
		server.WithInstructions(instructionsFor(opts.ReadOnly)),
	}
	if opts.ValidateOutput {
		sopts = append(sopts, server.WithOutputSchemaValidation())
	}
	sopts = append(sopts, opts.Extra...)
	s := server.NewMCPServer(opts.Name, opts.Version, sopts...)
	subs.srv = s

	for _, t := range AllTools(d) { // d keeps its limiter: one bound per server
		if opts.ReadOnly && !readOnly(t) {
			continue
		}
		s.AddTool(t.Def, t.Handler)
	}
	for _, r := range AllResources(d) {
		s.AddResource(r.Def, r.Handler)
	}
	for _, r := range AllResourceTemplates(d) {
		s.AddResourceTemplate(r.Def, r.Handler)
	}
	for _, p := range AllPrompts(d) {
		s.AddPrompt(p.Def, p.Handler)
	}
	if d.Watch != nil {
		subs.cancelWatch = d.Watch.Subscribe(subs)
	}
	return &Server{MCPServer: s, Subs: subs, Hooks: hooks, deps: d}
}

// Close detaches the registry from the watcher.
func (s *Server) Close() {
	s.Subs.close()
}

// instructionsFor is the server's instructions; a read-only server does not
// offer watch_endpoint.
func instructionsFor(readOnly bool) string {
	if readOnly {
		return instructions + "\n" + readOnlyInstructions
	}
	return instructions + "\n" + watchInstructions
}

const instructions = `tlswatch diagnoses and watches the TLS health of servers, first of all remote MCP servers over HTTPS.
Use check_tls to explain why a client cannot connect (expired or not yet valid certificate, incomplete chain, name mismatch, untrusted root, old TLS), inspect_chain for the certificates as served, and scan_endpoints for many targets at once.`

const watchInstructions = `Use watch_endpoint to probe a target on a schedule; subscribe to tlswatch://watches/{id} or tlswatch://expiring to be told when a watch goes down, crosses an expiry stage (30, 14, 7, 1 days) or its certificate rotates. ` + feedInstructions

const feedInstructions = `Every such event is also in the alert feed, tlswatch://alerts: subscribe to it to hear of each one, and read tlswatch://alerts?after=ID (the next of your last read) to catch up after being away.`

const readOnlyInstructions = `This server is read-only: its operator chooses what is watched. list_watches, list_expiring and get_history show the watches; subscribe to tlswatch://watches/{id} or tlswatch://expiring to be told when a watch goes down, crosses an expiry stage (30, 14, 7, 1 days) or its certificate rotates. ` + feedInstructions
