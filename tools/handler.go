package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/tlswatch/tlswatch/probe"
)

// handlerFunc is a tool body over typed arguments. It returns the structured
// output and a one-line human summary, or an error that becomes an isError
// result whose text is the error message as is (a *probe.FieldError reads
// "target: port 70000 out of range 1-65535").
type handlerFunc[A, R any] func(ctx context.Context, req mcp.CallToolRequest, args A) (R, string, error)

// typed adapts a handlerFunc to mcp-go. It replaces mcp.NewStructuredToolHandler,
// whose messages ("tool execution failed: ...", "failed to bind arguments:
// json: cannot unmarshal ...") do not name the field the way a user needs.
func typed[A, R any](fn handlerFunc[A, R]) server.ToolHandlerFunc {
	return typedLinked(fn, nil)
}

// typedLinked is typed whose successful results also carry links (content
// items of type resource_link) to the resources they name.
func typedLinked[A, R any](fn handlerFunc[A, R], links func(R) []mcp.Content) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		// A panic is our bug, not the caller's: answer isError (not a
		// protocol error) and keep serving.
		defer func() {
			if p := recover(); p != nil {
				res, err = mcp.NewToolResultError(fmt.Sprintf("internal error in %s: %v (please report it)", req.Params.Name, p)), nil
			}
		}()
		var args A
		if err := decodeArgs(req.GetRawArguments(), &args); err != nil {
			return toolError(err), nil
		}
		out, summary, err := fn(ctx, req, args)
		if err != nil {
			return toolError(err), nil
		}
		res = structuredResult(out, summary)
		if links != nil {
			res.Content = append(res.Content, links(out)...)
		}
		return res, nil
	}
}

// errorText is what an isError result says: a bad argument (a
// *probe.FieldError, whichever layer found it) as "field: reason", with
// nothing before the field; any other error as is.
func errorText(err error) string {
	var fe *probe.FieldError
	if errors.As(err, &fe) {
		return fe.Error()
	}
	return err.Error()
}

// maxErrorText bounds the text of an isError result: an error may quote
// an argument, and an argument can be megabytes.
const maxErrorText = 2048

func toolError(err error) *mcp.CallToolResult {
	return mcp.NewToolResultError(probe.Clip(errorText(err), maxErrorText))
}

// structuredResult carries out as structuredContent, the summary as the
// first text block and the JSON as the second: clients that only pass text
// content to the model (several do) still see every field.
//
// out is encoded once, compactly, and that encoding serves both: a list of
// 1,000 watches with their Reports is megabytes, and encoding it three
// times (indented text, structuredContent, the response) tripled its cost.
// maxTextJSON bounds the JSON repeated as a text block.
const maxTextJSON = 256 << 10

func structuredResult(out any, summary string) *mcp.CallToolResult {
	content := []mcp.Content{mcp.NewTextContent(summary)}
	b, err := json.Marshal(out)
	if err != nil {
		return &mcp.CallToolResult{Content: content, StructuredContent: out}
	}
	// The JSON copy in a text block serves clients that only read text;
	// past maxTextJSON (a fleet-wide list with every Report) no model reads
	// it usefully and it would double a multi-megabyte response, so the
	// summary says where the data is instead.
	if len(b) <= maxTextJSON {
		content = append(content, mcp.NewTextContent(string(b)))
	} else {
		content = append(content, mcp.NewTextContent(fmt.Sprintf("(%d KiB of JSON in structuredContent; not repeated as text)", len(b)>>10)))
	}
	return &mcp.CallToolResult{Content: content, StructuredContent: json.RawMessage(b)}
}

// decodeArgs decodes tool arguments strictly into dst (a pointer to a
// struct): unknown fields and wrong types are errors naming the field.
// Absent arguments decode as {}.
func decodeArgs(raw any, dst any) error {
	var b []byte
	switch v := raw.(type) {
	case nil:
		b = []byte("{}")
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return fmt.Errorf("arguments: %v", err)
		}
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		return errors.New("arguments: must be an object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return argError(err, dst)
	}
	return nil
}

// argError turns an encoding/json error into "field: reason".
func argError(err error, dst any) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := jsonPath(te.Field)
		if field == "" {
			field = "arguments"
		}
		got := te.Value
		if got == "" {
			got = "something else"
		}
		hint := ""
		if slices.Contains(fieldNames(te.Type), "target") {
			hint = ` such as {"target": "host:443"}`
		}
		return fmt.Errorf("%s: must be %s%s, got %s", field, jsonKind(te.Type), hint, got)
	}
	// encoding/json has no typed error for unknown fields; its message is
	// `json: unknown field "name"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		accepted := fieldNames(reflect.TypeOf(dst))
		if len(accepted) == 0 {
			return fmt.Errorf("%s: unknown argument (this tool takes no arguments)", name)
		}
		return fmt.Errorf("%s: unknown argument (accepted: %s)", name, strings.Join(accepted, ", "))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("arguments: invalid JSON: %v", err)
	}
	// A custom decoder (scan_endpoints) already names the field.
	var fe *probe.FieldError
	if errors.As(err, &fe) {
		return fe
	}
	return fmt.Errorf("arguments: %v", err)
}

// jsonPath drops the Go names of embedded structs that encoding/json puts
// in UnmarshalTypeError.Field ("TargetArgs.timeout_ms"); every JSON name
// of the tool arguments is lower case.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "" && (p[0] < 'A' || p[0] > 'Z') {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// fieldNames lists the JSON names of a struct's fields (embedded included).
func fieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for _, f := range reflect.VisibleFields(t) {
		if f.Anonymous || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// fieldErr builds a *probe.FieldError, the one bad-input type tools and the
// CLI share.
func fieldErr(field, format string, a ...any) error {
	return &probe.FieldError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// prefixField renames the field of a *probe.FieldError ("target" becomes
// "targets[3].target") so a bulk call names the culprit.
func prefixField(prefix string, err error) error {
	if prefix == "" || err == nil {
		return err
	}
	var fe *probe.FieldError
	if errors.As(err, &fe) {
		return &probe.FieldError{Field: prefix + fe.Field, Reason: fe.Reason}
	}
	return fmt.Errorf("%s%w", prefix, err)
}
