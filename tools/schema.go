package tools

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
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

func outputSchemaFor(t reflect.Type) (json.RawMessage, error) {
	overrides := map[reflect.Type]*jsonschema.Schema{}
	rec := recursiveTypes(t)
	loose := map[reflect.Type]*jsonschema.Schema{}
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
