package tools

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// Tool schemas are derived from the Go types the handlers decode and
// return, so schema and decoder cannot drift; this file shapes what is
// derived so that every client framework accepts it and tools/list stays
// small:
//
//   - input schemas: optional means "not required", never nullable (no
//     "type" arrays, which single-type dialects such as Gemini's reject);
//     every range, enum and default is a keyword (constraint), not only
//     prose;
//   - output schemas: objects stay open (a field added later must not break
//     a client that validates), and a Report or chain report nested in
//     another tool's result is described one level deep (summary) — its
//     every field is in check_tls's and inspect_chain's outputSchema. Each
//     tool repeating the full Report made tools/list 78 KB, which a client
//     that compiles schemas (the TypeScript SDK) pays for on every listing.

// schemaErrors collects schemas that could not be derived (the tool then
// declares a bare object); the inventory test requires it empty.
var (
	schemaErrMu  sync.Mutex
	schemaErrors []error
)

func recordSchemaError(err error) {
	schemaErrMu.Lock()
	schemaErrors = append(schemaErrors, err)
	schemaErrMu.Unlock()
}

// --- input ---

// Thresholds, in and out: a number of days or a string ("36h", "20%").
// Package watch validates what comes in (ranges included); the schema says
// what to send, as an item-level anyOf (never a type array, never a
// top-level anyOf, which some clients reject).
var (
	thresholdItem = &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
		{Type: "integer", Minimum: jsonschema.Ptr(1.0), Maximum: jsonschema.Ptr(float64(watch.MaxThresholdDays))},
		{Type: "string", Pattern: `^[0-9]+(d|h|%)?$`},
	}}
	argSchemas = map[reflect.Type]*jsonschema.Schema{
		reflect.TypeFor[ThresholdsArg](): {Type: "array", Items: thresholdItem, MaxItems: jsonschema.Ptr(watch.MaxThresholds)},
	}
	resultSchemas = map[reflect.Type]*jsonschema.Schema{
		reflect.TypeFor[probe.Threshold](): {AnyOf: []*jsonschema.Schema{{Type: "integer"}, {Type: "string"}}},
	}
)

// ThresholdsArg is thresholds_days as a client sends it, passed to package
// watch as is.
type ThresholdsArg []any

// constraint refines one property of an input schema.
type constraint func(props map[string]*jsonschema.Schema, s *jsonschema.Schema) error

// withInputSchema derives A's input schema (each field's jsonschema tag is
// its description), removes nullability and applies the constraints.
func withInputSchema[A any](cs ...constraint) mcp.ToolOption {
	raw, err := inputSchemaFor(reflect.TypeFor[A](), cs)
	if err != nil {
		recordSchemaError(err)
		raw = json.RawMessage(`{"type":"object"}`)
	}
	return func(t *mcp.Tool) {
		t.InputSchema.Type = "" // mcp.NewTool's default; the raw schema replaces it
		t.RawInputSchema = raw
	}
}

func inputSchemaFor(t reflect.Type, cs []constraint) (json.RawMessage, error) {
	s, err := jsonschema.ForType(t, &jsonschema.ForOptions{TypeSchemas: argSchemas})
	if err != nil {
		return nil, fmt.Errorf("input schema of %s: %w", t, err)
	}
	walkSchema(s, func(n *jsonschema.Schema) { n.Type, n.Types = singleType(n) })
	for _, c := range cs {
		if err := c(s.Properties, s); err != nil {
			return nil, fmt.Errorf("input schema of %s: %w", t, err)
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("input schema of %s: %w", t, err)
	}
	return b, nil
}

// singleType drops "null" from a type union: an optional argument is one
// that is not required.
func singleType(n *jsonschema.Schema) (string, []string) {
	if len(n.Types) == 0 {
		return n.Type, nil
	}
	rest := slices.DeleteFunc(slices.Clone(n.Types), func(t string) bool { return t == "null" })
	if len(rest) == 1 {
		return rest[0], nil
	}
	return "", rest
}

func property(props map[string]*jsonschema.Schema, name string) (*jsonschema.Schema, error) {
	p := props[name]
	if p == nil {
		return nil, fmt.Errorf("constraint on unknown property %q", name)
	}
	return p, nil
}

// intRange bounds an integer property, or the items of an integer array.
func intRange(name string, min, max int) constraint {
	return func(props map[string]*jsonschema.Schema, _ *jsonschema.Schema) error {
		p, err := property(props, name)
		if err != nil {
			return err
		}
		if p.Type == "array" && p.Items != nil {
			p = p.Items
		}
		if p.Type != "integer" {
			return fmt.Errorf("%s: range on a %s", name, p.Type)
		}
		lo, hi := float64(min), float64(max)
		p.Minimum, p.Maximum = &lo, &hi
		return nil
	}
}

// defaultValue declares what an absent property means.
func defaultValue(name string, v any) constraint {
	return func(props map[string]*jsonschema.Schema, _ *jsonschema.Schema) error {
		p, err := property(props, name)
		if err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		p.Default = b
		return nil
	}
}

// enumOf lists the values a string property takes.
func enumOf(name string, values ...string) constraint {
	return func(props map[string]*jsonschema.Schema, _ *jsonschema.Schema) error {
		p, err := property(props, name)
		if err != nil {
			return err
		}
		p.Enum = nil
		for _, v := range values {
			p.Enum = append(p.Enum, v)
		}
		return nil
	}
}

// itemCount bounds the length of an array property.
func itemCount(name string, min, max int) constraint {
	return func(props map[string]*jsonschema.Schema, _ *jsonschema.Schema) error {
		p, err := property(props, name)
		if err != nil {
			return err
		}
		p.MinItems, p.MaxItems = &min, &max
		return nil
	}
}

// optional drops a property from required (an alias may stand for it).
func optional(name string) constraint {
	return func(props map[string]*jsonschema.Schema, s *jsonschema.Schema) error {
		if _, err := property(props, name); err != nil {
			return err
		}
		s.Required = slices.DeleteFunc(s.Required, func(r string) bool { return r == name })
		return nil
	}
}

// itemsOr lets each item of an array property also be alt (an item-level
// anyOf; the top level of a schema stays a plain object).
func itemsOr(name string, alt *jsonschema.Schema) constraint {
	return func(props map[string]*jsonschema.Schema, _ *jsonschema.Schema) error {
		p, err := property(props, name)
		if err != nil {
			return err
		}
		if p.Items == nil {
			return fmt.Errorf("%s: not an array", name)
		}
		p.Items = &jsonschema.Schema{AnyOf: []*jsonschema.Schema{alt, p.Items}}
		return nil
	}
}

// targetConstraints are those of the target fields every probing tool
// takes (probe owns the limits).
func targetConstraints() []constraint {
	return []constraint{
		intRange("timeout_ms", 1, int(probe.MaxTimeout.Milliseconds())),
		defaultValue("timeout_ms", probe.DefaultTimeout.Milliseconds()),
	}
}

// diagnoseConstraints are those of DiagnoseArgs (check_tls, inspect_chain).
func diagnoseConstraints() []constraint {
	schemes := slices.Sorted(maps.Keys(probe.TLSSchemes))
	return append(targetConstraints(),
		enumOf("starttls", schemes...),
		defaultValue("deep", false),
		defaultValue("no_revocation", false),
		defaultValue("single_address", false),
	)
}

// inItems applies constraints to the object items of an array property.
func inItems(name string, cs ...constraint) constraint {
	return func(props map[string]*jsonschema.Schema, _ *jsonschema.Schema) error {
		p, err := property(props, name)
		if err != nil {
			return err
		}
		if p.Items == nil || p.Items.Properties == nil {
			return fmt.Errorf("%s: not an array of objects", name)
		}
		for _, c := range cs {
			if err := c(p.Items.Properties, p.Items); err != nil {
				return fmt.Errorf("%s items: %w", name, err)
			}
		}
		return nil
	}
}

// walkSchema calls f on s and every schema under it.
func walkSchema(s *jsonschema.Schema, f func(*jsonschema.Schema)) {
	if s == nil {
		return
	}
	f(s)
	for _, p := range s.Properties {
		walkSchema(p, f)
	}
	walkSchema(s.Items, f)
	walkSchema(s.AdditionalProperties, f)
	for _, l := range [][]*jsonschema.Schema{s.AnyOf, s.AllOf, s.OneOf, s.PrefixItems} {
		for _, c := range l {
			walkSchema(c, f)
		}
	}
}

// --- output ---

// shared are the result types several tools return, each described in
// full by the outputSchema of the tool that owns it and one level deep
// (shallow) in every other: their fields are many, and repeating them in
// every tool made tools/list 78 KB.
var shared = []struct {
	t     reflect.Type
	owner string
}{
	{reflect.TypeFor[probe.Report](), "check_tls"},
	{reflect.TypeFor[probe.ChainReport](), "inspect_chain"},
	{reflect.TypeFor[watch.Watch](), "watch_endpoint"},
}

// withOutputSchema derives tool's outputSchema from T, like
// mcp.WithOutputSchema, but also for types that contain themselves (a
// Revocation lists the Revocations of the intermediates): jsonschema-go
// refuses cycles, so each recursive struct is described once in full, with
// its nested occurrences as plain objects. The shared types tool does not
// own are summarized.
func withOutputSchema[T any](tool string) mcp.ToolOption {
	raw, err := outputSchemaFor(reflect.TypeFor[T](), tool)
	if err != nil {
		recordSchemaError(err)
		raw = json.RawMessage(`{"type":"object"}`)
	}
	return mcp.WithRawOutputSchema(raw)
}

// withTopOutputSchema is withOutputSchema reduced to the fields of T named
// in fields, each with its type alone (required when T requires it): for a
// result whose parts are documented elsewhere, where the full schema would
// not fit in tools/list's budget. Unnamed fields are still allowed.
func withTopOutputSchema[T any](tool string, fields ...string) mcp.ToolOption {
	top, err := topSchema(reflect.TypeFor[T](), tool, fields)
	if err != nil {
		recordSchemaError(err)
		top = json.RawMessage(`{"type":"object"}`)
	}
	return mcp.WithRawOutputSchema(top)
}

func topSchema(t reflect.Type, tool string, fields []string) (json.RawMessage, error) {
	raw, err := outputSchemaFor(t, tool)
	if err != nil {
		return nil, err
	}
	var s *jsonschema.Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	top := &jsonschema.Schema{Type: s.Type, Properties: map[string]*jsonschema.Schema{}}
	for _, name := range fields {
		p := s.Properties[name]
		if p == nil {
			return nil, fmt.Errorf("output schema of %s: no field %q", t, name)
		}
		q := typeOnly(p)
		if q.Type == "" && len(q.Types) == 0 {
			q.Type = "object" // a $ref to a shared definition
		}
		top.Properties[name] = q
		if slices.Contains(s.Required, name) {
			top.Required = append(top.Required, name)
		}
	}
	return json.Marshal(top)
}

func outputSchemaFor(t reflect.Type, tool string) (json.RawMessage, error) {
	overrides, err := recursionOverrides(t)
	if err != nil {
		return nil, err
	}
	base := maps.Clone(overrides) // a summary must not nest in another (ChainReport embeds Report)
	for _, sh := range shared {
		if sh.owner == tool || embeddedInOwned(sh.t, tool) {
			continue
		}
		full, err := jsonschema.ForType(sh.t, &jsonschema.ForOptions{IgnoreInvalidTypes: true, TypeSchemas: base})
		if err != nil {
			return nil, fmt.Errorf("output schema of %s: %w", sh.t, err)
		}
		overrides[sh.t] = shallow(full, fmt.Sprintf("A %s: every field is described by the outputSchema of %s.", sh.t.Name(), sh.owner))
	}
	var s *jsonschema.Schema
	if o := overrides[t]; o != nil && o.Description != "" {
		s = o // the result is itself a summarized type
	} else if s, err = jsonschema.ForType(t, &jsonschema.ForOptions{IgnoreInvalidTypes: true, TypeSchemas: overrides}); err != nil {
		return nil, fmt.Errorf("output schema of %s: %w", t, err)
	}
	if s.Type != "object" {
		return nil, fmt.Errorf("output schema of %s: type %q, want object", t, s.Type)
	}
	walkSchema(s, func(n *jsonschema.Schema) { n.AdditionalProperties = nil })
	shareDefinitions(s)
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("output schema of %s: %w", t, err)
	}
	return b, nil
}

// minSharedSize is the encoded size from which a repeated subschema moves
// to $defs: below it a $ref saves little.
const minSharedSize = 200

// shareDefinitions moves every subschema that occurs more than once in s
// (a certificate's details under leaf and client_cert) to s.$defs, leaving
// local $refs, largest first.
func shareDefinitions(s *jsonschema.Schema) {
	for n := 0; ; n++ {
		canon, occurrences := largestRepeated(s)
		if canon == "" {
			return
		}
		name := fmt.Sprintf("d%d", n)
		var def *jsonschema.Schema
		replace := func(p **jsonschema.Schema) {
			if *p != nil && encoded(*p) == canon {
				if def == nil {
					def = *p
				}
				*p = &jsonschema.Schema{Ref: "#/$defs/" + name}
			}
		}
		walkSlots(s, replace)
		if def == nil || occurrences < 2 {
			return
		}
		if s.Defs == nil {
			s.Defs = map[string]*jsonschema.Schema{}
		}
		s.Defs[name] = def
	}
}

// largestRepeated finds the largest subschema of at least minSharedSize
// bytes that occurs twice or more under s (its $defs included).
func largestRepeated(s *jsonschema.Schema) (canon string, count int) {
	counts := map[string]int{}
	walkSlots(s, func(p **jsonschema.Schema) {
		if e := encoded(*p); len(e) >= minSharedSize {
			counts[e]++
		}
	})
	for e, c := range counts {
		if c >= 2 && (len(e) > len(canon) || (len(e) == len(canon) && e < canon)) {
			canon, count = e, c
		}
	}
	return canon, count
}

func encoded(s *jsonschema.Schema) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// walkSlots calls f with the address of every subschema under s (not s).
func walkSlots(s *jsonschema.Schema, f func(**jsonschema.Schema)) {
	visit := func(p **jsonschema.Schema) {
		if *p == nil {
			return
		}
		f(p)
		if *p != nil {
			walkSlots(*p, f)
		}
	}
	for _, m := range []map[string]*jsonschema.Schema{s.Properties, s.Defs} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			p := m[k]
			visit(&p)
			m[k] = p
		}
	}
	visit(&s.Items)
	for _, l := range [][]*jsonschema.Schema{s.AnyOf, s.AllOf, s.OneOf} {
		for i := range l {
			visit(&l[i])
		}
	}
}

// embeddedInOwned reports whether a shared type tool owns embeds t (a
// ChainReport is a Report and more): jsonschema-go cannot summarize an
// embedded struct, and its fields are the owner's own.
func embeddedInOwned(t reflect.Type, tool string) bool {
	for _, sh := range shared {
		if sh.owner != tool {
			continue
		}
		for _, f := range reflect.VisibleFields(sh.t) {
			if f.Anonymous && f.Type == t {
				return true
			}
		}
	}
	return false
}

// shallow keeps s's required properties with their types (the object
// stays open to the rest), and their own properties and item shapes out.
func shallow(s *jsonschema.Schema, description string) *jsonschema.Schema {
	out := &jsonschema.Schema{Type: s.Type, Types: s.Types, Description: description,
		Required: s.Required, Properties: map[string]*jsonschema.Schema{}}
	for _, name := range s.Required {
		p := s.Properties[name]
		if p == nil {
			continue
		}
		q := typeOnly(p)
		q.Enum = p.Enum
		if p.Items != nil {
			q.Items = typeOnly(p.Items)
		}
		out.Properties[name] = q
	}
	return out
}

// typeOnly is s's type, or the types of its anyOf branches (a threshold is
// an integer or a string): never an empty schema, which encodes as true.
func typeOnly(s *jsonschema.Schema) *jsonschema.Schema {
	out := &jsonschema.Schema{Type: s.Type, Types: s.Types}
	for _, b := range s.AnyOf {
		out.AnyOf = append(out.AnyOf, typeOnly(b))
	}
	return out
}

// recursionOverrides describes each recursive struct reachable from t once
// in full, with its nested occurrences as plain objects.
func recursionOverrides(t reflect.Type) (map[reflect.Type]*jsonschema.Schema, error) {
	overrides := maps.Clone(resultSchemas)
	rec := recursiveTypes(t)
	loose := maps.Clone(resultSchemas)
	for _, r := range rec {
		loose[r] = &jsonschema.Schema{Type: "object"}
	}
	for _, r := range rec {
		// A struct type with the same fields but a different identity, so
		// the override for r applies to its nested occurrences only.
		fields := make([]reflect.StructField, r.NumField())
		for i := range fields {
			fields[i] = r.Field(i)
		}
		s, err := jsonschema.ForType(reflect.StructOf(fields), &jsonschema.ForOptions{IgnoreInvalidTypes: true, TypeSchemas: loose})
		if err != nil {
			return nil, fmt.Errorf("output schema of %s: %w", r, err)
		}
		overrides[r] = s
	}
	return overrides, nil
}

// recursiveTypes finds the named struct types reachable from t that contain
// themselves.
func recursiveTypes(t reflect.Type) []reflect.Type {
	var out []reflect.Type
	found := map[reflect.Type]bool{}
	done := map[reflect.Type]bool{}
	onStack := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		if onStack[t] {
			if t.Name() != "" && !found[t] {
				found[t] = true
				out = append(out, t)
			}
			return
		}
		if done[t] {
			return
		}
		onStack[t] = true
		for _, f := range reflect.VisibleFields(t) {
			if f.IsExported() && !f.Anonymous {
				walk(f.Type)
			}
		}
		onStack[t] = false
		done[t] = true
	}
	walk(t)
	return out
}
