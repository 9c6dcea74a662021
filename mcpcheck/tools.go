package mcpcheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/tlswatch/tlswatch/probe"
)

// Bounds of a tool listing.
const (
	maxToolPages = 50
	maxTools     = 5000
)

// ToolDigest is one listed tool: its name and a digest of what an agent
// relies on — name, description, input and output schema — in canonical
// JSON. Title, annotations, icons and _meta are left out: they are
// cosmetic or change without changing what the tool does.
type ToolDigest = probe.MCPTool

// ServerInfo is the server's self-description.
type ServerInfo = probe.MCPServer

// Observation is what an MCP-level watch records per probe: the `mcp`
// object of the watch record, plus the tool digests that the next probe is
// compared with (DiffTools). A Report carries it as its MCP level.
type Observation = probe.MCPInfo

// ToolsChange is what differs between two tool lists, names sorted.
type ToolsChange = probe.ToolsChange

// Observation returns what an MCP-level watch records. ok is false when
// the endpoint did not answer as an MCP server or its tool list could not
// be read: a failed MCP probe.
func (r Result) Observation() (Observation, bool) {
	if !r.IsMCP || r.ToolsHash == "" {
		return Observation{}, false
	}
	return Observation{
		ProtocolVersion: r.ProtocolVersion,
		Server:          ServerInfo{Name: r.ServerName, Version: r.ServerVersion},
		ToolCount:       len(r.Tools),
		ToolsHash:       r.ToolsHash,
		LatencyMS:       r.LatencyMS,
		Tools:           slices.Clone(r.Tools),
	}, true
}

// Observe checks one MCP endpoint as Run does and returns, with the
// Result, what an MCP-level watch records: initialize (or server/discover
// for a 2026-07-28-only server) and every page of tools/list. The
// observation is nil when the endpoint did not answer as MCP (see the
// Result's findings for why). err is only bad input, as for Run.
func Observe(ctx context.Context, rawURL string, opts Options) (*Observation, Result, error) {
	res, err := Run(ctx, rawURL, opts)
	if err != nil {
		return nil, res, err
	}
	o, ok := res.Observation()
	if !ok {
		return nil, res, nil
	}
	return &o, res, nil
}

// DiffTools compares two tool lists by name. A name listed twice (a
// broken server) is compared by its set of digests.
func DiffTools(before, after []ToolDigest) ToolsChange {
	index := func(ts []ToolDigest) map[string][]string {
		m := map[string][]string{}
		for _, t := range ts {
			m[t.Name] = append(m[t.Name], t.Digest)
		}
		for _, ds := range m {
			slices.Sort(ds)
		}
		return m
	}
	b, a := index(before), index(after)
	var c ToolsChange
	for name, ds := range a {
		old, ok := b[name]
		switch {
		case !ok:
			c.Added = append(c.Added, name)
		case !slices.Equal(old, ds):
			c.Changed = append(c.Changed, name)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			c.Removed = append(c.Removed, name)
		}
	}
	slices.Sort(c.Added)
	slices.Sort(c.Removed)
	slices.Sort(c.Changed)
	return c
}

// digestTools digests each raw tool of a tools/list result and the list as
// a whole. The list hash is over the sorted (name, digest) pairs, so the
// order in which a server lists its tools does not matter.
func digestTools(raw []json.RawMessage) ([]ToolDigest, string, error) {
	out := make([]ToolDigest, 0, len(raw))
	for i, r := range raw {
		var t struct {
			Name         string          `json:"name"`
			Description  *string         `json:"description"`
			InputSchema  json.RawMessage `json:"inputSchema"`
			OutputSchema json.RawMessage `json:"outputSchema"`
		}
		if err := json.Unmarshal(r, &t); err != nil || t.Name == "" {
			return nil, "", fmt.Errorf("tool %d has no name", i)
		}
		fields := map[string]any{"name": t.Name}
		if t.Description != nil {
			fields["description"] = *t.Description
		}
		for k, v := range map[string]json.RawMessage{"inputSchema": t.InputSchema, "outputSchema": t.OutputSchema} {
			if len(v) > 0 && !bytes.Equal(v, []byte("null")) {
				fields[k] = v
			}
		}
		sum, err := canonicalHash(fields)
		if err != nil {
			return nil, "", fmt.Errorf("tool %q: %w", t.Name, err)
		}
		out = append(out, ToolDigest{Name: t.Name, Digest: sum[:16]})
	}
	slices.SortFunc(out, func(a, b ToolDigest) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	all, err := canonicalHash(out)
	if err != nil {
		return nil, "", err
	}
	return out, "sha256:" + all, nil
}

// canonicalHash is the hex SHA-256 of v in canonical JSON: object keys
// sorted, no insignificant space, numbers as the server wrote them, no HTML
// escaping. Raw JSON inside v is canonicalised too.
func canonicalHash(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil {
		return "", err
	}
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return hex.EncodeToString(sum[:]), nil
}
