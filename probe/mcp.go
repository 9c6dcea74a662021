package probe

import "strings"

// The MCP level of a Report. Package probe does not speak MCP: package
// mcpcheck fills these on the probes of MCP-level watches, and they live
// here because the Report (and so a watch's history) carries them.

// MCPInfo is what the MCP level of a probe saw: initialize (or
// server/discover) and every page of tools/list. The first five fields are
// the `mcp` object of an MCP-level watch record.
type MCPInfo struct {
	ProtocolVersion string    `json:"protocol_version"`
	Server          MCPServer `json:"server"`
	ToolCount       int       `json:"tool_count"`
	// ToolsHash is a stable hash of the tools' names and schemas: the same
	// list in any order gives the same hash.
	ToolsHash string `json:"tools_hash"`
	// LatencyMS is the initialize round trip (connect, TLS, request,
	// complete response).
	LatencyMS float64 `json:"latency_ms"`
	// Tools are the listed tools' digests, sorted by name: what tells the
	// next probe what was added, removed or changed. Not part of the JSON:
	// a Report shows the hash, and an MCP-level watch keeps the latest list
	// with its record.
	Tools []MCPTool `json:"-"`
}

// MCPServer is the server's self-description (serverInfo).
type MCPServer struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// MCPTool is one listed tool: its name and a digest of what an agent
// relies on (name, description, input and output schema).
type MCPTool struct {
	Name   string `json:"name"`
	Digest string `json:"digest"` // 16 hex digits of SHA-256
}

// ToolsChange is what differs between two tool lists, names sorted.
type ToolsChange struct {
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	Changed []string `json:"changed,omitempty"`
}

// Empty reports whether nothing changed.
func (c ToolsChange) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

// String words the change for an alert: "added a, b; removed c; changed d".
func (c ToolsChange) String() string {
	var parts []string
	for _, p := range []struct {
		verb  string
		names []string
	}{{"added", c.Added}, {"removed", c.Removed}, {"changed", c.Changed}} {
		if len(p.names) > 0 {
			parts = append(parts, p.verb+" "+strings.Join(p.names, ", "))
		}
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}
