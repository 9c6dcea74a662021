package tools

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
)

// schemaErrors collects output schemas that could not be derived (the tool
// then declares a bare object); the inventory test requires it empty.
var (
	schemaErrMu  sync.Mutex
	schemaErrors []error
)

// withOutputSchema derives the tool's outputSchema from T, like
// mcp.WithOutputSchema, but also for types that contain themselves (a
// Revocation lists the Revocations of the intermediates): jsonschema-go
// refuses cycles, so each recursive struct is described once in full, with
// its nested occurrences as plain objects. Everything else is exactly what
// jsonschema-go derives, so schema and struct cannot drift.
func withOutputSchema[T any]() mcp.ToolOption {
	raw, err := outputSchemaFor(reflect.TypeFor[T]())
	if err != nil {
		schemaErrMu.Lock()
		schemaErrors = append(schemaErrors, err)
		schemaErrMu.Unlock()
		raw = json.RawMessage(`{"type":"object"}`)
	}
	return mcp.WithRawOutputSchema(raw)
}

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

// withInputSchema derives the tool's inputSchema from T like
// mcp.WithInputSchema, with the argument types above described by hand.
func withInputSchema[T any]() mcp.ToolOption {
	s, err := jsonschema.For[T](&jsonschema.ForOptions{IgnoreInvalidTypes: true, TypeSchemas: argSchemas})
	var raw json.RawMessage
	if err == nil {
		raw, err = json.Marshal(s)
	}
	if err != nil {
		schemaErrMu.Lock()
		schemaErrors = append(schemaErrors, fmt.Errorf("input schema of %s: %w", reflect.TypeFor[T](), err))
		schemaErrMu.Unlock()
		raw = json.RawMessage(`{"type":"object"}`)
	}
	return func(t *mcp.Tool) {
		t.InputSchema.Type = "" // as mcp.WithInputSchema: the raw schema alone
		t.RawInputSchema = raw
	}
}

func outputSchemaFor(t reflect.Type) (json.RawMessage, error) {
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
	s, err := jsonschema.ForType(t, &jsonschema.ForOptions{IgnoreInvalidTypes: true, TypeSchemas: overrides})
	if err != nil {
		return nil, fmt.Errorf("output schema of %s: %w", t, err)
	}
	if s.Type != "object" {
		return nil, fmt.Errorf("output schema of %s: type %q, want object", t, s.Type)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("output schema of %s: %w", t, err)
	}
	return b, nil
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
