package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/invopop/jsonschema"
	validator "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// schema is a generated JSON Schema, compiled for validation.
type schema struct {
	raw      json.RawMessage
	compiled *validator.Schema
	// secretPaths are the JSON paths (property names from the root) of
	// fields marked "x-secret", for redaction.
	secretPaths [][]string
}

// reflectSchema generates the draft 2020-12 JSON Schema of t's Go type.
func reflectSchema(t reflect.Type) (json.RawMessage, error) {
	r := &jsonschema.Reflector{
		DoNotReference: true,
		Anonymous:      true,
		ExpandedStruct: true,
	}
	s := r.ReflectFromType(t)
	s.Version = "https://json-schema.org/draft/2020-12/schema"
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", t, err)
	}
	return b, nil
}

// compileSchema compiles raw as JSON Schema 2020-12. name identifies the
// schema in errors.
func compileSchema(name string, raw json.RawMessage) (*schema, error) {
	doc, err := validator.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema %s is not JSON: %w", name, err)
	}
	c := validator.NewCompiler()
	c.DefaultDraft(validator.Draft2020)
	c.AssertFormat()
	url := "mem:///" + name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	compiled, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema %s does not compile: %w", name, err)
	}
	return &schema{raw: raw, compiled: compiled, secretPaths: secretPaths(doc)}, nil
}

// schemaFor generates and compiles the schema of v's type.
func schemaFor(name string, t reflect.Type) (*schema, error) {
	raw, err := reflectSchema(t)
	if err != nil {
		return nil, err
	}
	return compileSchema(name, raw)
}

// validate decodes raw JSON and validates it. root names the envelope field
// ("request", "settings", "auth") for error messages. It returns the
// decoded document for secret extraction.
func (s *schema) validate(root string, raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	doc, err := validator.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, NewError(BadRequest, root+": not valid JSON: "+err.Error())
	}
	if err := s.compiled.Validate(doc); err != nil {
		var ve *validator.ValidationError
		if errors.As(err, &ve) {
			return nil, &Error{Code: BadRequest, Message: describeValidation(root, ve), raisedIn: "sdk.validate"}
		}
		return nil, &Error{Code: BadRequest, Message: root + ": " + err.Error(), raisedIn: "sdk.validate"}
	}
	return doc, nil
}

// describeValidation turns a validation error tree into one message naming
// every failing field, e.g. "request.limit: must be <= 20; request.owner_id:
// is required".
func describeValidation(root string, ve *validator.ValidationError) string {
	var msgs []string
	seen := map[string]bool{}
	var walk func(e *validator.ValidationError)
	walk = func(e *validator.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		for _, m := range leafMessages(root, e) {
			if !seen[m] {
				seen[m] = true
				msgs = append(msgs, m)
			}
		}
	}
	walk(ve)
	if len(msgs) == 0 {
		return root + ": " + ve.Error()
	}
	sort.Strings(msgs)
	return strings.Join(msgs, "; ")
}

func leafMessages(root string, e *validator.ValidationError) []string {
	loc := fieldPath(root, e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		out := make([]string, 0, len(k.Missing))
		for _, m := range k.Missing {
			out = append(out, fieldPath(loc, []string{m})+": is required")
		}
		return out
	case *kind.AdditionalProperties:
		out := make([]string, 0, len(k.Properties))
		for _, p := range k.Properties {
			out = append(out, fieldPath(loc, []string{p})+": is not a known field")
		}
		return out
	case *kind.Type:
		return []string{fmt.Sprintf("%s: must be %s, not %s", loc, strings.Join(k.Want, " or "), k.Got)}
	}
	return []string{loc + ": " + e.ErrorKind.LocalizedString(messagePrinter)}
}

// fieldPath joins a JSON instance location to a dotted path with [i] for
// array indexes: request.items[2].name.
func fieldPath(root string, loc []string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, seg := range loc {
		if isIndex(seg) {
			b.WriteString("[" + seg + "]")
			continue
		}
		b.WriteByte('.')
		b.WriteString(seg)
	}
	return b.String()
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// secretPaths returns the property paths of every "x-secret": true field in
// a schema document (through properties, items and additionalProperties).
func secretPaths(doc any) [][]string {
	var out [][]string
	var walk func(node any, path []string)
	walk = func(node any, path []string) {
		m, ok := node.(map[string]any)
		if !ok {
			return
		}
		if v, ok := m["x-secret"]; ok && (v == true || v == "true") {
			out = append(out, append([]string(nil), path...))
		}
		if props, ok := m["properties"].(map[string]any); ok {
			for name, p := range props {
				walk(p, append(path, name))
			}
		}
		if items, ok := m["items"]; ok {
			walk(items, append(path, "*"))
		}
		if ap, ok := m["additionalProperties"]; ok {
			walk(ap, append(path, "*"))
		}
	}
	walk(doc, nil)
	return out
}

// secretValues collects the string values at the given paths in doc. A "*"
// segment matches every array element or object member.
func secretValues(doc any, paths [][]string) []string {
	var out []string
	var walk func(node any, path []string)
	walk = func(node any, path []string) {
		if len(path) == 0 {
			if s, ok := node.(string); ok {
				out = append(out, s)
			}
			return
		}
		switch t := node.(type) {
		case map[string]any:
			if path[0] == "*" {
				for _, v := range t {
					walk(v, path[1:])
				}
				return
			}
			if v, ok := t[path[0]]; ok {
				walk(v, path[1:])
			}
		case []any:
			if path[0] == "*" {
				for _, v := range t {
					walk(v, path[1:])
				}
			}
		}
	}
	for _, p := range paths {
		walk(doc, p)
	}
	return out
}
