package tools

import (
	"context"
	"encoding/json"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// The operator's secrets (Deps.Redact: the --token, every --mcp-token,
// client-key material) are hidden in everything a tool or a resource
// returns, whatever a probed server put in its certificate, headers or
// answers. This is the one place results pass on their way out; mcpcheck
// also hides them as it reads, before anything is clipped.

// redactTool wraps a tool handler so that its result is redacted.
func (d Deps) redactTool(h server.ToolHandlerFunc) server.ToolHandlerFunc {
	if d.Redact.Empty() {
		return h
	}
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := h(ctx, req)
		if res == nil {
			return res, err
		}
		for i, c := range res.Content {
			switch c := c.(type) {
			case mcp.TextContent:
				c.Text = d.Redact.String(c.Text)
				res.Content[i] = c
			case mcp.ResourceLink:
				c.URI, c.Name, c.Description = d.Redact.String(c.URI), d.Redact.String(c.Name), d.Redact.String(c.Description)
				res.Content[i] = c
			}
		}
		switch sc := res.StructuredContent.(type) {
		case nil:
		case json.RawMessage:
			res.StructuredContent = json.RawMessage(d.Redact.Bytes(sc))
		default:
			if b, err := json.Marshal(sc); err == nil {
				res.StructuredContent = json.RawMessage(d.Redact.Bytes(b))
			}
		}
		return res, err
	}
}

// redactResource wraps a resource (or template) handler likewise.
func (d Deps) redactResource(h server.ResourceHandlerFunc) server.ResourceHandlerFunc {
	if d.Redact.Empty() {
		return h
	}
	return func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		out, err := h(ctx, req)
		for i, c := range out {
			if tc, ok := c.(mcp.TextResourceContents); ok {
				tc.Text, tc.URI = d.Redact.String(tc.Text), d.Redact.String(tc.URI)
				out[i] = tc
			}
		}
		return out, err
	}
}
