package tools

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/mcpcheck"
	"github.com/tlswatch/tlswatch/probe"
)

// MCPCheckFunc has the signature of mcpcheck.Run.
type MCPCheckFunc func(ctx context.Context, rawURL string, opts mcpcheck.Options) (mcpcheck.Result, error)

// MCPCheckArgs are check_mcp_endpoint's arguments: the target fields, the
// target being the MCP URL, and how to authenticate: the name of one of
// the operator's tokens (token_name), or, kept for older callers, a raw
// token.
type MCPCheckArgs struct {
	TargetArgs
	URL        string `json:"url,omitempty" jsonschema:"Alias of target, for callers that think of the endpoint as a URL: give target or url."`
	TokenName  string `json:"token_name,omitempty" jsonschema:"Authenticate with this bearer token: the NAME of a token the operator loaded with serve --mcp-token NAME=ENV_VAR (or NAME=@FILE), so the token never passes through the model. Sent only when the certificate verifies for its name; never logged or echoed."`
	Token      string `json:"token,omitempty" jsonschema:"Deprecated: use token_name. A raw bearer token (it passes through the model). Sent only when the certificate verifies; never echoed."`
	ClientCert string `json:"client_cert,omitempty" jsonschema:"Present this client certificate (mTLS) when the server asks for one: the NAME of a certificate the operator loaded with --client-cert NAME=CERT,KEY (never a path)."`
}

// mcpToken resolves the token arguments; "" means none. An unknown name is
// an error naming the field and listing the loaded names (never a value).
func (d Deps) mcpToken(a MCPCheckArgs) (string, error) {
	name := strings.TrimSpace(a.TokenName)
	switch {
	case name != "" && a.Token != "":
		return "", fieldErr("token_name", "give token_name or token, not both")
	case name == "":
		return a.Token, nil
	}
	return d.namedToken(name)
}

// namedToken is the operator's token of that name, or an error naming
// token_name.
func (d Deps) namedToken(name string) (string, error) {
	if tok, ok := d.MCPTokens[name]; ok {
		return tok, nil
	}
	if len(d.MCPTokens) == 0 {
		return "", fieldErr("token_name", "%q is not loaded: this server has no MCP tokens (the operator adds them with serve --mcp-token NAME=ENV_VAR or NAME=@FILE)", clipArg(name))
	}
	return "", fieldErr("token_name", "%q is not loaded (loaded: %s)", clipArg(name), strings.Join(slices.Sorted(maps.Keys(d.MCPTokens)), ", "))
}

// clipArg bounds an argument echoed in an error.
func clipArg(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
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
	} else if r.Auth != nil {
		fmt.Fprintf(&b, "; requires authorization (HTTP %d)", r.HTTPStatus)
		if r.AuthChain != nil {
			broken := 0
			for _, f := range r.Findings {
				if strings.HasPrefix(f.Code, "auth_") {
					broken++
				}
			}
			if broken == 0 {
				b.WriteString(", authorization chain consistent")
			} else {
				fmt.Fprintf(&b, ", %d problem%s in the authorization chain (see auth_chain)", broken, plural(broken))
			}
		}
	} else {
		b.WriteString("; not answering as an MCP server")
	}
	return b.String()
}

func checkMCPEndpointTool(d Deps) Tool {
	def := mcp.NewTool("check_mcp_endpoint",
		mcp.WithDescription("Check that a URL is a live remote MCP server: the check_tls probe, then MCP initialize and tools/list over streamable HTTP. "+
			"Reports the protocol version, server name and version, the tools and their hash, the latency, and findings such as not_mcp or mcp_auth_required. "+
			"On a 401 it follows the authorization chain (resource and authorization-server metadata, the TLS of every host) and reports each broken link (auth_* findings; the chain in auth_chain). "+
			"For a protected endpoint pass token_name."),
		withInputSchema[MCPCheckArgs](append(targetConstraints(), optional("target"))...),
		withOutputSchema[mcpcheck.Result]("check_mcp_endpoint"),
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
		token, err := d.mcpToken(a)
		if err != nil {
			return mcpcheck.Result{}, "", err
		}
		popts, err := d.options(DiagnoseArgs{ClientCert: a.ClientCert})
		if err != nil {
			return mcpcheck.Result{}, "", err
		}
		release, err := d.acquire(ctx)
		if err != nil {
			return mcpcheck.Result{}, "", err
		}
		defer release()
		res, err := d.MCPCheck(ctx, a.Target, mcpcheck.Options{
			Probe:     popts,
			IP:        a.IP,
			SNI:       a.SNI,
			TimeoutMS: a.TimeoutMS,
			Token:     token,
			Redact:    d.Redact,
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
