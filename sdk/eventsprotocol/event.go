package eventsprotocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Event is one events-protocol message, request or response. It serializes
// to camelCase JSON:
//
//	{"name": "get:event:example", "version": 1, "id": "…", "flowId": "…",
//	 "payload": {…}, "identity": {…}, "auth": {…}, "metadata": {…}}
//
// Payload, Identity, Auth and Metadata hold raw JSON so that a response
// copies the request's values byte for byte (no float rounding of numbers).
// A nil Payload, Identity, Auth or Metadata marshals as {}.
type Event struct {
	// Name is the event name; for requests it matches NamePattern.
	Name string `json:"name"`
	// Version is the event version.
	Version int `json:"version"`
	// ID identifies this event.
	ID string `json:"id"`
	// FlowID identifies the flow (chain of events) this event belongs to.
	FlowID string `json:"flowId"`
	// Payload is the event's data (a JSON object for requests).
	Payload json.RawMessage `json:"payload"`
	// Identity describes who the event acts for (e.g. {"userId": …}).
	Identity json.RawMessage `json:"identity"`
	// Auth carries credentials of the caller; it may contain secrets.
	Auth json.RawMessage `json:"auth"`
	// Metadata carries free-form information (origin, timestamps, …).
	Metadata json.RawMessage `json:"metadata"`
}

// NamePattern is the pattern every request event name must match, e.g.
// "get:event:example".
const NamePattern = `^[a-z_]+[a-z]:[a-z_]+[a-z](:[a-z]+[a-z])*$`

var nameRE = regexp.MustCompile(NamePattern)

// ValidName reports whether name matches NamePattern.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// emptyObject is the JSON written for absent object fields.
var emptyObject = json.RawMessage(`{}`)

// NewEvent builds a request event with fresh UUIDs for ID and FlowID and
// empty identity, auth and metadata. payload is marshaled to JSON; it must
// marshal to a JSON object. The name must match NamePattern.
func NewEvent(name string, version int, payload any) (*Event, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("eventsprotocol: payload: %w", err)
	}
	ev := &Event{
		Name:     name,
		Version:  version,
		ID:       uuid.NewString(),
		FlowID:   uuid.NewString(),
		Payload:  raw,
		Identity: emptyObject,
		Auth:     emptyObject,
		Metadata: emptyObject,
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev, nil
}

// MarshalJSON writes the event with {} in place of nil object fields.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	p := plain(e)
	for _, f := range []*json.RawMessage{&p.Payload, &p.Identity, &p.Auth, &p.Metadata} {
		if len(*f) == 0 {
			*f = emptyObject
		}
	}
	return json.Marshal(p)
}

// Validate checks a request event the way ParseEvent does: the name matches
// NamePattern, the payload is a JSON object and identity, auth and metadata
// are JSON objects or empty (valid JSON in every case). The error is a *ProtocolError naming each bad
// field.
func (e *Event) Validate() error {
	fields := map[string]string{}
	if e.Name == "" {
		fields["name"] = "is required"
	} else if !ValidName(e.Name) {
		fields["name"] = "must match " + NamePattern
	}
	checkObject := func(field string, v json.RawMessage, required bool) {
		switch kind := jsonKind(v); {
		case kind == "" && !required:
		case kind == "":
			fields[field] = "is required"
		case !json.Valid(v):
			fields[field] = "is not valid JSON"
		case kind != "object":
			fields[field] = "must be an object, not " + kind
		}
	}
	checkObject("payload", e.Payload, true)
	checkObject("identity", e.Identity, false)
	checkObject("auth", e.Auth, false)
	checkObject("metadata", e.Metadata, false)
	if len(fields) > 0 {
		return &ProtocolError{Fields: fields}
	}
	return nil
}

// PayloadAs decodes the payload into v.
func (e *Event) PayloadAs(v any) error { return decodeField("payload", e.Payload, v) }

// IdentityAs decodes the identity into v.
func (e *Event) IdentityAs(v any) error { return decodeField("identity", e.Identity, v) }

// AuthAs decodes the auth object into v.
func (e *Event) AuthAs(v any) error { return decodeField("auth", e.Auth, v) }

// MetadataAs decodes the metadata into v.
func (e *Event) MetadataAs(v any) error { return decodeField("metadata", e.Metadata, v) }

func decodeField(field string, raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = emptyObject
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("eventsprotocol: %s: %w", field, err)
	}
	return nil
}

// ProtocolError reports an event that does not follow the protocol. Fields
// maps each bad field ("name", "version", "payload", …, or "body" when the
// whole body is unusable) to the reason.
type ProtocolError struct {
	Fields map[string]string
}

// Error lists the bad fields in a stable order.
func (e *ProtocolError) Error() string {
	return "eventsprotocol: invalid event: " + formatFields(e.Fields)
}

// formatFields renders {"a": "x", "b": "y"} as "a x; b y", sorted by field.
func formatFields(fields map[string]string) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" "+fields[k])
	}
	return strings.Join(parts, "; ")
}

// ParseEvent parses and validates a request event:
//   - the body is one JSON object;
//   - name is a string matching NamePattern;
//   - version is an integer (32-bit, as in the Kotlin original);
//   - payload is a JSON object;
//   - id and flowId, when present and not null, are strings; when absent,
//     null or "" each gets a fresh random UUID (per event: the Python
//     original's import-time default, which gave every event the same id,
//     is a bug not copied);
//   - identity, auth and metadata, when present and not null, are objects;
//     absent or null they become {}.
//
// Unknown top-level fields are ignored. The error is a *ProtocolError.
func ParseEvent(data []byte) (*Event, error) {
	ev, err := parse(data, true)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// ParseResponse parses and validates a response event. It is more lenient
// than ParseEvent, as response names such as "badProtocol" or
// "eventNotFound" do not match NamePattern: name must be a non-empty string,
// version an integer, payload present (any JSON value); the optional fields
// follow the ParseEvent rules. The error is a *ProtocolError.
func ParseResponse(data []byte) (*Event, error) {
	ev, err := parse(data, false)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// parse validates data as an event. On failure it also returns what it
// could read (id and flowId when they are strings) so that the badProtocol
// answer can keep them.
func parse(data []byte, request bool) (*Event, *ProtocolError) {
	var fieldsRaw map[string]json.RawMessage
	if err := json.Unmarshal(data, &fieldsRaw); err != nil || fieldsRaw == nil {
		reason := "must be a JSON object"
		if !json.Valid(data) {
			reason = "is not valid JSON"
		}
		return &Event{}, &ProtocolError{Fields: map[string]string{"body": reason}}
	}
	bad := map[string]string{}
	ev := &Event{}

	switch v, kind := fieldsRaw["name"], jsonKind(fieldsRaw["name"]); {
	case kind == "" || kind == "null":
		bad["name"] = "is required"
	case kind != "string":
		bad["name"] = "must be a string, not " + kind
	default:
		_ = json.Unmarshal(v, &ev.Name)
		switch {
		case ev.Name == "":
			bad["name"] = "must not be empty"
		case request && !ValidName(ev.Name):
			bad["name"] = "must match " + NamePattern
		}
	}

	switch v, kind := fieldsRaw["version"], jsonKind(fieldsRaw["version"]); {
	case kind == "" || kind == "null":
		bad["version"] = "is required"
	case kind != "number":
		bad["version"] = "must be an integer, not " + kind
	default:
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 32)
		if err != nil {
			bad["version"] = "must be a 32-bit integer"
		} else {
			ev.Version = int(n)
		}
	}

	for _, f := range []struct {
		name string
		dst  *string
	}{{"id", &ev.ID}, {"flowId", &ev.FlowID}} {
		switch v, kind := fieldsRaw[f.name], jsonKind(fieldsRaw[f.name]); kind {
		case "", "null":
		case "string":
			_ = json.Unmarshal(v, f.dst)
		default:
			bad[f.name] = "must be a string, not " + kind
		}
	}

	switch v, kind := fieldsRaw["payload"], jsonKind(fieldsRaw["payload"]); {
	case kind == "":
		bad["payload"] = "is required"
	case request && kind == "null":
		bad["payload"] = "is required"
	case request && kind != "object":
		bad["payload"] = "must be an object, not " + kind
	default:
		ev.Payload = v
	}

	for _, f := range []struct {
		name string
		dst  *json.RawMessage
	}{{"identity", &ev.Identity}, {"auth", &ev.Auth}, {"metadata", &ev.Metadata}} {
		switch v, kind := fieldsRaw[f.name], jsonKind(fieldsRaw[f.name]); kind {
		case "", "null":
			*f.dst = emptyObject
		case "object":
			*f.dst = v
		default:
			bad[f.name] = "must be an object, not " + kind
		}
	}

	if len(bad) > 0 {
		return ev, &ProtocolError{Fields: bad}
	}
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.FlowID == "" {
		ev.FlowID = uuid.NewString()
	}
	return ev, nil
}

// jsonKind names the JSON type of a valid JSON value: "object", "array",
// "string", "number", "boolean" or "null"; "" for an empty value.
func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}
