package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/probe"
)

// annotate sets every hint explicitly: clients treat a missing hint as its
// pessimistic default, and the inventory test checks they are all present.
func annotate(title string, readOnly, destructive, idempotent, openWorld bool) mcp.ToolOption {
	return mcp.WithToolAnnotation(mcp.ToolAnnotation{
		Title:           title,
		ReadOnlyHint:    &readOnly,
		DestructiveHint: &destructive,
		IdempotentHint:  &idempotent,
		OpenWorldHint:   &openWorld,
	})
}

// runProbe runs one probe with the shared options and normalises the
// Report so that it validates against the derived schema ([] not null).
func (d Deps) runProbe(ctx context.Context, t probe.Target) (probe.Report, error) {
	return d.runProbeWith(ctx, t, d.ProbeOptions)
}

func (d Deps) runProbeWith(ctx context.Context, t probe.Target, opts probe.Options) (probe.Report, error) {
	release, err := d.acquire(ctx)
	if err != nil {
		return probe.Report{}, err
	}
	defer release()
	r, err := d.Probe(ctx, t, opts)
	if err != nil {
		return probe.Report{}, err
	}
	normalizeReport(&r)
	return r, nil
}

// acquire takes a probe slot (see probeLimiter).
func (d Deps) acquire(ctx context.Context) (func(), error) {
	if d.limiter == nil {
		return func() {}, nil
	}
	return d.limiter.acquire(ctx)
}

// normalizeReport turns nil slices the contract shows as arrays into [].
func normalizeReport(r *probe.Report) {
	if r.Findings == nil {
		r.Findings = []probe.Finding{}
	}
	if r.Leaf != nil && r.Leaf.SANs == nil {
		r.Leaf.SANs = []string{}
	}
	if r.Chain != nil && r.Chain.VerifiedPath == nil {
		r.Chain.VerifiedPath = []string{}
	}
	if r.ExpiryStage == "" {
		r.ExpiryStage = "none"
	}
}

// --- check_tls ---

func checkTLSTool(d Deps) Tool {
	def := mcp.NewTool("check_tls",
		mcp.WithDescription("Probe one TLS endpoint the way an agent's HTTPS client would and explain the verdict: "+
			"status ok/warning/critical/down, whether it is reachable and trusted, the expiry stage, every finding "+
			"(expired, not yet valid, expiring soon, name mismatch, incomplete chain, untrusted root, self-signed, old TLS, weak key or signature, ...), "+
			"the negotiated TLS version and cipher, the leaf certificate and the chain. Use it when a client cannot connect to an HTTPS or MCP server."),
		withInputSchema[DiagnoseArgs](diagnoseConstraints()...),
		withOutputSchema[probe.Report]("check_tls"),
		annotate("Check TLS", true, false, true, true),
	)
	return Tool{Def: def, Handler: typed(func(ctx context.Context, _ mcp.CallToolRequest, a DiagnoseArgs) (probe.Report, string, error) {
		t, err := a.probeTarget()
		if err != nil {
			return probe.Report{}, "", err
		}
		opts, err := d.options(a)
		if err != nil {
			return probe.Report{}, "", err
		}
		r, err := d.runProbeWith(ctx, t, opts)
		if err != nil {
			return probe.Report{}, "", err
		}
		return r, reportSummary(r, a.Target), nil
	})}
}

// --- scan_endpoints ---

// ScanArgs are scan_endpoints' arguments.
type ScanArgs struct {
	Targets []ScanTarget `json:"targets" jsonschema:"The endpoints to probe (at most 200), each with the same fields as check_tls: target (required), ip, sni, timeout_ms. A plain string is accepted as shorthand for {\"target\": \"...\"}."`
}

// ScanTarget is one scan_endpoints entry: the check_tls target fields, or a
// plain string meaning just the target (agents often send a list of names).
type ScanTarget TargetArgs

// UnmarshalJSON decodes the entries one by one so that an error names its
// entry (targets[3]: ...); each is a string or a strict object.
func (a *ScanArgs) UnmarshalJSON(b []byte) error {
	var raw struct {
		Targets json.RawMessage `json:"targets"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if len(raw.Targets) == 0 || bytes.Equal(bytes.TrimSpace(raw.Targets), []byte("null")) {
		a.Targets = nil
		return nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw.Targets, &entries); err != nil {
		return fieldErr("targets", "must be an array of targets")
	}
	a.Targets = make([]ScanTarget, len(entries))
	for i, e := range entries {
		if err := a.Targets[i].decode(e); err != nil {
			return fieldErr(fmt.Sprintf("targets[%d]", i), "%v", err)
		}
	}
	return nil
}

// decode accepts "host:port" as well as {"target": "host:port", ...}.
func (s *ScanTarget) decode(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var t string
		if err := json.Unmarshal(b, &t); err != nil {
			return err
		}
		*s = ScanTarget{Target: t}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ta TargetArgs
	if err := dec.Decode(&ta); err != nil {
		return fmt.Errorf("must be a target string or an object with target, ip, sni, timeout_ms: %v", err)
	}
	*s = ScanTarget(ta)
	return nil
}

// StatusCounts counts Reports by status.
type StatusCounts struct {
	OK       int `json:"ok"`
	Warning  int `json:"warning"`
	Critical int `json:"critical"`
	Down     int `json:"down"`
}

func (c *StatusCounts) add(s probe.Status) {
	switch s {
	case probe.StatusOK:
		c.OK++
	case probe.StatusWarning:
		c.Warning++
	case probe.StatusCritical:
		c.Critical++
	default:
		c.Down++
	}
}

// ScanError is a target that could not be probed at all.
type ScanError struct {
	Index  int    `json:"index"`
	Target string `json:"target"`
	Error  string `json:"error"`
}

// ScanResult is scan_endpoints' output: one Report per target, in the order
// given.
type ScanResult struct {
	Total   int            `json:"total"`
	Counts  StatusCounts   `json:"counts"`
	Reports []probe.Report `json:"reports"`
	Errors  []ScanError    `json:"errors"`
}

func scanEndpointsTool(d Deps) Tool {
	def := mcp.NewTool("scan_endpoints",
		mcp.WithDescription(fmt.Sprintf("Probe many TLS endpoints in one call (at most %d), %d at a time, and return one check_tls Report per target in the order given, "+
			"with counts by status. Sends progress notifications while it runs when the request carries a progressToken.", d.MaxScanTargets, d.ScanConcurrency)),
		withInputSchema[ScanArgs](
			inItems("targets", targetConstraints()...),
			itemCount("targets", 1, d.MaxScanTargets),
			itemsOr("targets", &jsonschema.Schema{Type: "string", Description: "Shorthand for {\"target\": \"...\"}."}),
		),
		withOutputSchema[ScanResult]("scan_endpoints"),
		annotate("Scan endpoints", true, false, true, true),
	)
	return Tool{Def: def, Handler: typed(func(ctx context.Context, req mcp.CallToolRequest, a ScanArgs) (ScanResult, string, error) {
		return d.scan(ctx, req, a)
	})}
}

func (d Deps) scan(ctx context.Context, req mcp.CallToolRequest, a ScanArgs) (ScanResult, string, error) {
	if len(a.Targets) == 0 {
		return ScanResult{}, "", fieldErr("targets", "required: at least one target")
	}
	if len(a.Targets) > d.MaxScanTargets {
		return ScanResult{}, "", fieldErr("targets", "%d targets; at most %d per call", len(a.Targets), d.MaxScanTargets)
	}
	// Validate everything before probing anything: a typo in entry 150
	// should not cost 149 probes first.
	targets := make([]probe.Target, len(a.Targets))
	for i, ta := range a.Targets {
		t, err := TargetArgs(ta).probeTarget(fmt.Sprintf("targets[%d].", i))
		if err != nil {
			return ScanResult{}, "", err
		}
		targets[i] = t
	}

	res := ScanResult{Total: len(targets), Reports: make([]probe.Report, len(targets)), Errors: []ScanError{}}
	errs := make([]error, len(targets))
	progress := newProgress(ctx, req, len(targets))
	// probe.Scan (shared with `tlswatch scan`): ScanConcurrency workers,
	// a panic in one probe recovered as that target's error.
	probe.Scan(ctx, len(targets), d.ScanConcurrency, func(ctx context.Context, i int) (probe.Report, error) {
		return d.runProbe(ctx, targets[i])
	}, func(i int, r probe.Report, err error) {
		res.Reports[i], errs[i] = r, err
		progress.step(reportSummary(r, a.Targets[i].Target))
	})
	if err := ctx.Err(); err != nil {
		return ScanResult{}, "", fmt.Errorf("scan_endpoints: cancelled: %w", err)
	}
	for i := range res.Reports {
		if errs[i] != nil {
			res.Errors = append(res.Errors, ScanError{Index: i, Target: a.Targets[i].Target, Error: errs[i].Error()})
			// Keep one Report per target so indexes line up.
			res.Reports[i] = probe.Report{
				Target:      probe.TargetInfo{Host: targets[i].Host, Port: targets[i].Port, SNI: targets[i].SNI, IP: targets[i].IP},
				Status:      probe.StatusDown,
				ExpiryStage: "none",
				Findings:    []probe.Finding{},
			}
		}
		res.Counts.add(res.Reports[i].Status)
	}
	summary := fmt.Sprintf("scanned %d target%s: %d ok, %d warning, %d critical, %d down",
		res.Total, plural(res.Total), res.Counts.OK, res.Counts.Warning, res.Counts.Critical, res.Counts.Down)
	for i, r := range res.Reports {
		if r.Status != probe.StatusOK {
			summary += "\n- " + reportSummary(r, a.Targets[i].Target)
		}
	}
	return res, summary, nil
}

// progress sends notifications/progress for a request that carried a
// progressToken; best-effort (a full channel drops one, never blocks).
type progress struct {
	ctx   context.Context
	srv   *server.MCPServer
	token mcp.ProgressToken
	total int

	mu   sync.Mutex
	done int
}

func newProgress(ctx context.Context, req mcp.CallToolRequest, total int) *progress {
	p := &progress{ctx: ctx, srv: server.ServerFromContext(ctx), total: total}
	if req.Params.Meta != nil {
		p.token = req.Params.Meta.ProgressToken
	}
	return p
}

func (p *progress) step(message string) {
	// Serialised so progress values arrive increasing.
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.token == nil || p.srv == nil {
		return
	}
	params := map[string]any{"progressToken": p.token, "progress": p.done, "total": p.total}
	if message != "" {
		params["message"] = message
	}
	_ = p.srv.SendNotificationToClient(p.ctx, "notifications/progress", params)
}
