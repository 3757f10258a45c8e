// Package layout models the DSYNC data layout: the JSON schema a connector
// hands to the DSYNC platform describing its entities (endpoints) and their
// fields. It generates the exact wire JSON of PROTOCOLS.md "DSYNC", enforces
// every layout rule (reporting all violations at once, each with its path),
// generates entity tokens, loads layouts from files and validates records
// against an entity's fields.
//
// Field attributes whose type the protocol leaves open (id, value,
// date_format, foreign_key, bool_settings) are strings and default to "", as
// in the Python SDK's Field defaults.
package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// FieldType is the type of a data layout field.
type FieldType string

// The field types DSYNC knows (PROTOCOLS.md "Field types").
const (
	TypeText     FieldType = "text"
	TypeNumber   FieldType = "number"
	TypeURL      FieldType = "url"
	TypeEmail    FieldType = "email"
	TypeDate     FieldType = "date"
	TypeTime     FieldType = "time"
	TypeDatetime FieldType = "datetime"
	TypeBoolean  FieldType = "boolean"
	TypeObject   FieldType = "object"
	TypeMath     FieldType = "math"
	TypeCustom   FieldType = "custom"
)

var knownTypes = []FieldType{
	TypeText, TypeNumber, TypeURL, TypeEmail, TypeDate, TypeTime, TypeDatetime,
	TypeBoolean, TypeObject, TypeMath, TypeCustom,
}

// KnownTypes returns the field types DSYNC accepts, in the protocol's order.
func KnownTypes() []FieldType { return slices.Clone(knownTypes) }

// Known reports whether t is one of the DSYNC field types.
func (t FieldType) Known() bool { return slices.Contains(knownTypes, t) }

// Field is one attribute of an entity. The JSON field order is the wire order
// of PROTOCOLS.md.
type Field struct {
	// ID is an optional identifier of the field in the connector's system.
	ID string `json:"id"`
	// Treekey is the field's position inside the entity in dot notation,
	// e.g. "product.sku"; unique within its entity. Required.
	Treekey string `json:"treekey"`
	// Value is an optional default or example value.
	Value string `json:"value"`
	// Type is one of the known field types. Required.
	Type FieldType `json:"type"`
	// Multiple marks a field holding a list of values of Type.
	Multiple bool `json:"multiple"`
	// DateFormat is the format of date/time/datetime values ("" = ISO 8601).
	DateFormat string `json:"date_format"`
	// Required marks a field every record must carry.
	Required bool `json:"required"`
	// Functions lists platform functions applied to the field; never null on
	// the wire.
	Functions []string `json:"functions"`
	// PrimaryKey marks the field identifying a record of the entity.
	PrimaryKey bool `json:"primary_key"`
	// ForeignKey optionally names the treekey this field refers to.
	ForeignKey string `json:"foreign_key"`
	// BoolSettings optionally describes how booleans are shown.
	BoolSettings string `json:"bool_settings"`
	// Name is the field's display name. Required.
	Name string `json:"name"`
	// Description is an optional human description.
	Description string `json:"description"`
}

// MarshalJSON writes the field in wire order with "functions" as [] when
// empty and without HTML escaping.
func (f Field) MarshalJSON() ([]byte, error) {
	type wire Field // no methods: avoids recursion
	w := wire(f)
	if w.Functions == nil {
		w.Functions = []string{}
	}
	return encodeCompact(w)
}

// Entity is one endpoint of the connector (e.g. Product).
type Entity struct {
	// EntityName is the entity's name, e.g. "product". Required.
	EntityName string `json:"entity_name"`
	// Treekey is the entity's root treekey, e.g. "product". Required.
	Treekey string `json:"treekey"`
	// EndpointURL is the path (relative to the connector's inbound root) the
	// platform calls for this entity's records, e.g. "/entity/product".
	// Required.
	EndpointURL string `json:"endpoint_url"`
	// EntityToken identifies the entity system-wide (see GenerateEntityToken).
	// Required and unique.
	EntityToken string `json:"entity_token" jsonschema_extras:"x-secret=false"`
	// Fields are the entity's attributes; at least one.
	Fields []Field `json:"fields"`
}

// MarshalJSON writes the entity in wire order with "fields" as [] when empty.
func (e Entity) MarshalJSON() ([]byte, error) {
	type wire Entity
	w := wire(e)
	if w.Fields == nil {
		w.Fields = []Field{}
	}
	return encodeCompact(w)
}

// Layout is a data layout document: {"data_layout":[...]}.
type Layout struct {
	// DataLayout holds the entities in the connector's order.
	DataLayout []Entity `json:"data_layout"`
}

// MarshalJSON writes the layout with "data_layout" as [] when empty.
func (l Layout) MarshalJSON() ([]byte, error) {
	type wire Layout
	w := wire(l)
	if w.DataLayout == nil {
		w.DataLayout = []Entity{}
	}
	return encodeCompact(w)
}

// JSON returns the layout's wire JSON: compact, fields in the documented
// order, no HTML escaping, no trailing newline.
func (l *Layout) JSON() ([]byte, error) { return encodeCompact(l) }

// Entity returns the entity with the given entity token.
func (l *Layout) Entity(token string) (*Entity, bool) {
	for i := range l.DataLayout {
		if l.DataLayout[i].EntityToken == token {
			return &l.DataLayout[i], true
		}
	}
	return nil, false
}

// Clone returns a deep copy of the layout.
func (l *Layout) Clone() *Layout {
	out := &Layout{DataLayout: make([]Entity, len(l.DataLayout))}
	for i, e := range l.DataLayout {
		e.Fields = slices.Clone(e.Fields)
		for j := range e.Fields {
			e.Fields[j].Functions = slices.Clone(e.Fields[j].Functions)
		}
		out.DataLayout[i] = e
	}
	return out
}

// PrimaryKey returns the entity's primary key field, if it has exactly one.
func (e *Entity) PrimaryKey() (*Field, bool) {
	var pk *Field
	for i := range e.Fields {
		if e.Fields[i].PrimaryKey {
			if pk != nil {
				return nil, false
			}
			pk = &e.Fields[i]
		}
	}
	return pk, pk != nil
}

// Generate validates entities against every data layout rule and returns the
// layout document built from a copy of them, with empty "functions"
// normalised to []. All violations are reported at once in a
// *ValidationError whose paths are rooted at "entities".
func Generate(entities []Entity) (*Layout, error) {
	if err := validateRules(entities, "entities"); err != nil {
		return nil, err
	}
	l := (&Layout{DataLayout: entities}).Clone()
	for i := range l.DataLayout {
		for j := range l.DataLayout[i].Fields {
			if l.DataLayout[i].Fields[j].Functions == nil {
				l.DataLayout[i].Fields[j].Functions = []string{}
			}
		}
	}
	return l, nil
}

// Validate checks entities against every data layout rule and returns a
// *ValidationError listing all violations (paths rooted at "entities"), or
// nil.
func Validate(entities []Entity) error { return validateRules(entities, "entities") }

// validateRules enforces PROTOCOLS.md's layout rules: at least one entity;
// every entity has entity_name, treekey, endpoint_url, entity_token and at
// least one field; entity tokens unique; every field has treekey, type and
// name; field types known; treekeys unique within their entity.
func validateRules(entities []Entity, root string) error {
	var v violations
	if len(entities) == 0 {
		v.add(root, "at least one entity is required")
		return v.err("data layout")
	}
	tokens := map[string]int{}
	for i, e := range entities {
		ep := fmt.Sprintf("%s[%d]", root, i)
		v.required(ep+".entity_name", e.EntityName)
		v.required(ep+".treekey", e.Treekey)
		v.required(ep+".endpoint_url", e.EndpointURL)
		if v.required(ep+".entity_token", e.EntityToken) {
			if j, dup := tokens[e.EntityToken]; dup {
				v.add(ep+".entity_token", fmt.Sprintf("%q is already used by %s[%d]; entity tokens must be unique", e.EntityToken, root, j))
			} else {
				tokens[e.EntityToken] = i
			}
		}
		if len(e.Fields) == 0 {
			v.add(ep+".fields", "at least one field is required")
			continue
		}
		treekeys := map[string]int{}
		for j, f := range e.Fields {
			fp := fmt.Sprintf("%s.fields[%d]", ep, j)
			if v.required(fp+".treekey", f.Treekey) {
				if k, dup := treekeys[f.Treekey]; dup {
					v.add(fp+".treekey", fmt.Sprintf("%q is already used by %s.fields[%d]; treekeys must be unique within an entity", f.Treekey, ep, k))
				} else {
					treekeys[f.Treekey] = j
				}
			}
			if v.required(fp+".type", string(f.Type)) && !f.Type.Known() {
				v.add(fp+".type", fmt.Sprintf("unknown field type %q (known: %s)", string(f.Type), typeList()))
			}
			v.required(fp+".name", f.Name)
		}
	}
	return v.err("data layout")
}

func typeList() string {
	s := make([]string, len(knownTypes))
	for i, t := range knownTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// encodeCompact marshals v without HTML escaping and without the encoder's
// trailing newline.
func encodeCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
