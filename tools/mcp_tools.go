package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
)

// MCPCheckFunc has the signature of mcpcheck.Run.
type MCPCheckFunc func(ctx context.Context, rawURL string, opts mcpcheck.Options) (mcpcheck.Result, error)

// MCPCheckArgs are check_mcp_endpoint's arguments: the target fields, the
// target being the MCP URL, and an optional bearer token.
type MCPCheckArgs struct {
	TargetArgs
	URL   string `json:"url,omitempty" jsonschema:"Alias of target, for callers that think of the endpoint as a URL."`
	Token string `json:"token,omitempty" jsonschema:"Bearer token for the MCP server, if it requires one. Sent only when the certificate verifies; never echoed back."`
}

func normalizeMCPResult(r *mcpcheck.Result) {
	if r.Findings == nil {
		r.Findings = []probe.Finding{}
	}
	normalizeReport(&r.TLS)
}

func mcpSummary(r mcpcheck.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s — status %s", r.URL, r.Status)
	top, more := topFindings(r.Findings)
	if top != nil && (top.Severity != probe.SeverityInfo || r.Status != probe.StatusOK) {
		fmt.Fprintf(&b, ": %s (%s)", top.Code, top.Message)
		if more > 0 {
			fmt.Fprintf(&b, "; %d more finding%s", more, plural(more))
		}
	}
	if r.IsMCP {
		fmt.Fprintf(&b, "; live MCP server")
		if r.ServerName != "" {
			fmt.Fprintf(&b, " %s", r.ServerName)
			if r.ServerVersion != "" {
				fmt.Fprintf(&b, " %s", r.ServerVersion)
			}
		}
		if r.ProtocolVersion != "" {
			fmt.Fprintf(&b, ", protocol %s", r.ProtocolVersion)
		}
		if r.ToolsListed != nil {
			fmt.Fprintf(&b, ", %d tool%s", *r.ToolsListed, plural(*r.ToolsListed))
		}
		fmt.Fprintf(&b, ", initialize in %.0f ms", r.LatencyMS)
	} else {
		b.WriteString("; not answering as an MCP server")
	}
	return b.String()
}

func checkMCPEndpointTool(d Deps) Tool {
	def := mcp.NewTool("check_mcp_endpoint",
		mcp.WithDescription("Check that a URL is a live remote MCP server: the check_tls probe of its TLS endpoint, then an MCP initialize (and tools/list) over streamable HTTP. "+
			"Reports whether it speaks MCP, the protocol version, server name and version, the number of tools, the latency, and findings such as not_mcp or mcp_auth_required."),
		mcp.WithInputSchema[MCPCheckArgs](),
		withOutputSchema[mcpcheck.Result](),
		annotate("Check MCP endpoint", true, false, true, true),
	)
	return Tool{Def: def, Handler: typed(func(ctx context.Context, _ mcp.CallToolRequest, a MCPCheckArgs) (mcpcheck.Result, string, error) {
		switch {
		case strings.TrimSpace(a.URL) != "" && strings.TrimSpace(a.Target) != "":
			return mcpcheck.Result{}, "", fieldErr("url", "give target or url, not both")
		case strings.TrimSpace(a.URL) != "":
			a.Target = a.URL
		case strings.TrimSpace(a.Target) == "":
			return mcpcheck.Result{}, "", fieldErr("target", "required: the MCP URL, e.g. https://mcp.example.com/mcp")
		}
		release, err := d.acquire(ctx)
		if err != nil {
			return mcpcheck.Result{}, "", err
		}
		defer release()
		res, err := d.MCPCheck(ctx, a.Target, mcpcheck.Options{
			Probe:     d.ProbeOptions,
			IP:        a.IP,
			SNI:       a.SNI,
			TimeoutMS: a.TimeoutMS,
			Token:     a.Token,
		})
		if err != nil {
			// mcpcheck names the URL "url"; this tool calls it target.
			var fe *probe.FieldError
			if errors.As(err, &fe) && fe.Field == "url" {
				return mcpcheck.Result{}, "", &probe.FieldError{Field: "target", Reason: fe.Reason}
			}
			return mcpcheck.Result{}, "", err
		}
		normalizeMCPResult(&res)
		return res, mcpSummary(res), nil
	})}
}
