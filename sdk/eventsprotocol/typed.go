package eventsprotocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/invopop/jsonschema"
	jsv "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Request is what a typed handler receives: the event and its payload
// decoded into P after validation against P's JSON Schema.
type Request[P any] struct {
	// Event is the request event (its Payload is the raw JSON).
	Event *Event
	// Payload is the decoded payload.
	Payload P
}

// TypedHandler is a Handler with a typed payload P and response payload R.
// Build one with Typed.
type TypedHandler[P, R any] struct {
	fn        func(context.Context, Request[P]) (R, error)
	schema    *jsv.Schema
	schemaDoc json.RawMessage
}

// Typed wraps fn as a Handler. The JSON Schema (draft 2020-12) of P is
// generated with invopop/jsonschema: fields without omitempty are required,
// unknown properties are allowed (ignored). Each payload is validated
// against it before fn runs; a payload that fails answers
// "<name>:badRequest" with code MISSING_FIELDS and parameters
// {"fields": {"payload.<path>": reason}}.
func Typed[P, R any](fn func(context.Context, Request[P]) (R, error)) (*TypedHandler[P, R], error) {
	if fn == nil {
		return nil, errors.New("eventsprotocol: handler function must not be nil")
	}
	reflector := &jsonschema.Reflector{ExpandedStruct: true, AllowAdditionalProperties: true, Anonymous: true}
	var zero P
	doc, err := json.Marshal(reflector.Reflect(zero))
	if err != nil {
		return nil, fmt.Errorf("eventsprotocol: payload schema of %T: %w", zero, err)
	}
	schema, err := compileSchema(doc)
	if err != nil {
		return nil, fmt.Errorf("eventsprotocol: payload schema of %T: %w", zero, err)
	}
	return &TypedHandler[P, R]{fn: fn, schema: schema, schemaDoc: doc}, nil
}

// MustTyped is Typed for handlers built at init time; it panics on error.
func MustTyped[P, R any](fn func(context.Context, Request[P]) (R, error)) *TypedHandler[P, R] {
	h, err := Typed(fn)
	if err != nil {
		panic(err)
	}
	return h
}

// PayloadSchema returns the JSON Schema of the payload.
func (h *TypedHandler[P, R]) PayloadSchema() json.RawMessage {
	return append(json.RawMessage(nil), h.schemaDoc...)
}

// Handle validates and decodes the payload, then calls the function.
func (h *TypedHandler[P, R]) Handle(ctx context.Context, ev *Event) (any, error) {
	raw := ev.Payload
	if len(raw) == 0 {
		raw = emptyObject
	}
	inst, err := jsv.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, missingFields(map[string]string{"payload": "is not valid JSON"})
	}
	if err := h.schema.Validate(inst); err != nil {
		var ve *jsv.ValidationError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("eventsprotocol: validating payload: %w", err)
		}
		return nil, missingFields(schemaFields(ve))
	}
	var p P
	if err := json.Unmarshal(raw, &p); err != nil {
		field := "payload"
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field += "." + te.Field
		}
		return nil, missingFields(map[string]string{field: "cannot be decoded: " + err.Error()})
	}
	return h.fn(ctx, Request[P]{Event: ev, Payload: p})
}

// missingFields is the badRequest error of a payload that fails its schema.
func missingFields(fields map[string]string) *EventError {
	params := make(map[string]any, len(fields))
	for k, v := range fields {
		params[k] = v
	}
	return &EventError{Type: ErrorBadRequest, Code: CodeMissingFields, Parameters: map[string]any{"fields": params}}
}

const schemaURL = "mem:///eventsprotocol/payload.schema.json"

func compileSchema(doc []byte) (*jsv.Schema, error) {
	v, err := jsv.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, err
	}
	c := jsv.NewCompiler()
	c.DefaultDraft(jsv.Draft2020)
	if err := c.AddResource(schemaURL, v); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
}

var printer = message.NewPrinter(language.English)

// schemaFields flattens a validation error into {"payload.<path>": reason},
// one entry per failing value; a missing required property is reported at
// its own path.
func schemaFields(ve *jsv.ValidationError) map[string]string {
	reasons := map[string][]string{}
	add := func(loc []string, reason string) {
		path := "payload"
		if len(loc) > 0 {
			path += "." + strings.Join(loc, ".")
		}
		for _, r := range reasons[path] {
			if r == reason {
				return
			}
		}
		reasons[path] = append(reasons[path], reason)
	}
	var walk func(e *jsv.ValidationError, depth int)
	walk = func(e *jsv.ValidationError, depth int) {
		if len(e.Causes) > 0 && depth < 64 {
			for _, c := range e.Causes {
				walk(c, depth+1)
			}
			return
		}
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				add(append(append([]string(nil), e.InstanceLocation...), m), "is required")
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				add(append(append([]string(nil), e.InstanceLocation...), p), "is not allowed")
			}
		default:
			add(e.InstanceLocation, e.ErrorKind.LocalizedString(printer))
		}
	}
	walk(ve, 0)
	out := make(map[string]string, len(reasons))
	for path, rs := range reasons {
		sort.Strings(rs)
		out[path] = strings.Join(rs, "; ")
	}
	return out
}
