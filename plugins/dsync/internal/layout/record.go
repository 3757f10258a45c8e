package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ncruces/go-strftime"
)

// MaxRecordIDLen bounds the length of a record's primary key value.
const MaxRecordIDLen = 1024

// Records are JSON objects. A field's place in a record is its treekey
// relative to the entity's treekey, in dot notation: in entity "product",
// field "product.sku" is record["sku"] and "product.size.width" is
// record["size"]["width"]; a treekey not starting with "<entity treekey>." is
// used whole. A field with multiple=true holds an array of values.
//
// Values are checked against the field's type:
//   - text: string; number: JSON number; boolean: true/false
//   - url: absolute URL with scheme and host; email: a bare address
//   - date: "2006-01-02"; time: "15:04", "15:04:05" (optional fraction and
//     zone); datetime: RFC 3339, or "2006-01-02 15:04:05" / "2006-01-02T15:04:05"
//     without zone. When the field's date_format contains '%' it is a
//     strftime format and values must parse with it; any other non-empty
//     date_format is opaque to the connector and only a non-empty string is
//     required.
//   - object: a JSON object, not checked further
//   - math, custom: any non-null JSON value
//
// null counts as absent. Required fields and the primary key must be present.
// Keys the layout does not define are rejected, except inside object, math
// and custom fields.

// RecordSchema validates records of one entity. Build it with
// Entity.RecordSchema.
type RecordSchema struct {
	entity *Entity
	pk     *Field
	pkPath []string
	root   *node
}

// node is one level of the record tree built from the fields' paths.
type node struct {
	field    *Field
	children map[string]*node
}

// Record is a validated record.
type Record struct {
	// ID is the primary key value as text (a number's JSON literal).
	ID string
	// Data is the record as compact JSON.
	Data json.RawMessage
}

// FieldPath returns the field's path inside a record of entity e.
func (e *Entity) FieldPath(f *Field) []string {
	tk := f.Treekey
	if e.Treekey != "" && strings.HasPrefix(tk, e.Treekey+".") {
		tk = tk[len(e.Treekey)+1:]
	}
	return strings.Split(tk, ".")
}

// RecordSchema checks that records of e can be stored and served — exactly
// one primary key field of a scalar type and not multiple, and field paths
// that are well-formed and distinct — and returns the schema validating them.
// Violations are rooted at path.
func (e *Entity) RecordSchema(path string) (*RecordSchema, error) {
	var v violations
	s := &RecordSchema{entity: e, root: &node{}}
	seen := map[string]int{}
	for i := range e.Fields {
		f := &e.Fields[i]
		fp := fmt.Sprintf("%s.fields[%d]", path, i)
		if f.PrimaryKey {
			if s.pk != nil {
				v.add(fp+".primary_key", "an entity served by the connector needs exactly one primary key field; another one is "+s.pk.Treekey)
			} else {
				s.pk = f
			}
			switch {
			case f.Multiple:
				v.add(fp+".multiple", "a primary key field cannot be multiple")
			case f.Type == TypeBoolean || f.Type == TypeObject || f.Type == TypeMath || f.Type == TypeCustom:
				v.add(fp+".type", fmt.Sprintf("a primary key field cannot be of type %q", string(f.Type)))
			}
		}
		segs := e.FieldPath(f)
		if slices.ContainsFunc(segs, blank) {
			v.add(fp+".treekey", fmt.Sprintf("%q does not name a field inside entity treekey %q (empty path segment)", f.Treekey, e.Treekey))
			continue
		}
		key := strings.Join(segs, ".")
		if j, dup := seen[key]; dup {
			v.add(fp+".treekey", fmt.Sprintf("%q places the field at %q like %s.fields[%d]", f.Treekey, key, path, j))
			continue
		}
		seen[key] = i
		n := s.root
		for _, seg := range segs {
			if n.children == nil {
				n.children = map[string]*node{}
			}
			c, ok := n.children[seg]
			if !ok {
				c = &node{}
				n.children[seg] = c
			}
			n = c
		}
		n.field = f
		if f.PrimaryKey && s.pk == f {
			s.pkPath = segs
		}
	}
	if s.pk == nil {
		v.add(path+".fields", "an entity served by the connector needs exactly one field with primary_key true")
	}
	if err := v.err("data layout"); err != nil {
		return nil, err
	}
	return s, nil
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// Entity returns the entity the schema validates.
func (s *RecordSchema) Entity() *Entity { return s.entity }

// PrimaryKey returns the primary key field and its record path.
func (s *RecordSchema) PrimaryKey() (*Field, []string) { return s.pk, s.pkPath }

// Validate checks data against the entity's fields and returns the record
// with its primary key. Errors are a *ValidationError naming each offending
// field by its record path (e.g. "sku", "size.width", "tags[2]").
func (s *RecordSchema) Validate(data []byte) (Record, error) {
	var v violations
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var rec any
	if err := dec.Decode(&rec); err != nil {
		v.add("", "record is not valid JSON: "+err.Error())
		return Record{}, v.err("record")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		v.add("", "record has trailing data after the JSON value")
		return Record{}, v.err("record")
	}
	obj, ok := rec.(map[string]any)
	if !ok {
		v.add("", "record must be a JSON object")
		return Record{}, v.err("record")
	}
	s.check(s.root, obj, "", &v)
	var id string
	if pkVal, ok := lookup(obj, s.pkPath); ok {
		switch x := pkVal.(type) {
		case string:
			id = x
		case json.Number:
			id = x.String()
		}
	}
	if pkVal, ok := lookup(obj, s.pkPath); ok && id == "" {
		if str, isStr := pkVal.(string); isStr && str == "" {
			v.add(strings.Join(s.pkPath, "."), "primary key must not be empty")
		}
	}
	if len(id) > MaxRecordIDLen {
		v.add(strings.Join(s.pkPath, "."), fmt.Sprintf("primary key longer than %d bytes", MaxRecordIDLen))
	}
	if err := v.err("record"); err != nil {
		return Record{}, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return Record{}, err
	}
	return Record{ID: id, Data: buf.Bytes()}, nil
}

// check validates obj against n's children and rejects unknown keys.
func (s *RecordSchema) check(n *node, obj map[string]any, prefix string, v *violations) {
	for _, name := range sortedAnyKeys(n.children) {
		c := n.children[name]
		p := joinPath(prefix, name)
		val, present := obj[name]
		if present && val == nil {
			present = false
		}
		if c.field != nil {
			f := c.field
			if !present {
				if f.Required || f.PrimaryKey {
					v.add(p, "is required")
				}
				continue
			}
			if f.Multiple {
				arr, ok := val.([]any)
				if !ok {
					v.add(p, fmt.Sprintf("must be an array of %s values (multiple is true)", f.Type))
					continue
				}
				for i, el := range arr {
					if el == nil {
						v.add(fmt.Sprintf("%s[%d]", p, i), "must not be null")
						continue
					}
					if reason := checkValue(f, el); reason != "" {
						v.add(fmt.Sprintf("%s[%d]", p, i), reason)
					}
				}
				continue
			}
			if reason := checkValue(f, val); reason != "" {
				v.add(p, reason)
				continue
			}
			if f.Type == TypeObject || f.Type == TypeMath || f.Type == TypeCustom {
				continue // free-form content
			}
		}
		if len(c.children) > 0 {
			if !present {
				s.requireAbsent(c, p, v)
				continue
			}
			sub, ok := val.(map[string]any)
			if !ok {
				if c.field == nil {
					v.add(p, "must be an object (the layout has fields inside it)")
				}
				continue
			}
			s.check(c, sub, p, v)
		}
	}
	for _, k := range sortedAnyKeys(obj) {
		if _, known := n.children[k]; !known {
			v.add(joinPath(prefix, k), "unknown field: not in the entity's data layout")
		}
	}
}

// requireAbsent reports the required fields under a missing container.
func (s *RecordSchema) requireAbsent(n *node, prefix string, v *violations) {
	for _, name := range sortedAnyKeys(n.children) {
		c := n.children[name]
		p := joinPath(prefix, name)
		if c.field != nil && (c.field.Required || c.field.PrimaryKey) {
			v.add(p, "is required")
		}
		s.requireAbsent(c, p, v)
	}
}

// checkValue returns why val is not a valid value of f's type, or "".
func checkValue(f *Field, val any) string {
	switch f.Type {
	case TypeText:
		if _, ok := val.(string); !ok {
			return "must be a string (type text)"
		}
	case TypeNumber:
		if _, ok := val.(json.Number); !ok {
			return "must be a JSON number (type number)"
		}
	case TypeBoolean:
		if _, ok := val.(bool); !ok {
			return "must be true or false (type boolean)"
		}
	case TypeObject:
		if _, ok := val.(map[string]any); !ok {
			return "must be a JSON object (type object)"
		}
	case TypeURL:
		s, ok := val.(string)
		if !ok {
			return "must be a string holding an absolute URL (type url)"
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "must be an absolute URL with scheme and host (type url)"
		}
	case TypeEmail:
		s, ok := val.(string)
		if !ok {
			return "must be a string holding an email address (type email)"
		}
		a, err := mail.ParseAddress(s)
		if err != nil || a.Name != "" || a.Address != s {
			return "must be a bare email address like name@example.com (type email)"
		}
	case TypeDate, TypeTime, TypeDatetime:
		s, ok := val.(string)
		if !ok {
			return fmt.Sprintf("must be a string (type %s)", f.Type)
		}
		return checkTemporal(f, s)
	case TypeMath, TypeCustom:
		// any non-null value
	default:
		return fmt.Sprintf("field has unknown type %q", string(f.Type))
	}
	return ""
}

var temporalLayouts = map[FieldType][]string{
	TypeDate: {time.DateOnly},
	TypeTime: {"15:04", time.TimeOnly, "15:04:05.999999999", "15:04:05Z07:00", "15:04:05.999999999Z07:00"},
	TypeDatetime: {time.RFC3339Nano, time.DateTime, "2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999"},
}

func checkTemporal(f *Field, s string) string {
	switch {
	case strings.Contains(f.DateFormat, "%"):
		if _, err := strftime.Parse(f.DateFormat, s); err != nil {
			return fmt.Sprintf("must match date_format %q (type %s)", f.DateFormat, f.Type)
		}
		return ""
	case f.DateFormat != "":
		if strings.TrimSpace(s) == "" {
			return fmt.Sprintf("must not be empty (type %s)", f.Type)
		}
		return ""
	}
	for _, layout := range temporalLayouts[f.Type] {
		if _, err := time.Parse(layout, s); err == nil {
			return ""
		}
	}
	switch f.Type {
	case TypeDate:
		return "must be a date like 2006-01-02 (type date)"
	case TypeTime:
		return "must be a time like 15:04:05 (type time)"
	default:
		return "must be a date-time like 2006-01-02T15:04:05Z (type datetime)"
	}
}

// lookup walks path in obj.
func lookup(obj map[string]any, path []string) (any, bool) {
	var cur any = obj
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func sortedAnyKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ParseRecordID parses an id given in a URL or header for entity s: for a
// number primary key it must be a JSON number literal.
func (s *RecordSchema) ParseRecordID(id string) (string, error) {
	if id == "" {
		return "", errors.New("record id is empty")
	}
	if len(id) > MaxRecordIDLen {
		return "", fmt.Errorf("record id longer than %d bytes", MaxRecordIDLen)
	}
	if s.pk.Type == TypeNumber {
		if _, err := strconv.ParseFloat(id, 64); err != nil || !json.Valid([]byte(id)) {
			return "", fmt.Errorf("record id %q is not a number (primary key %s is of type number)", id, strings.Join(s.pkPath, "."))
		}
	}
	return id, nil
}

// Schemas builds the RecordSchema of every entity (see Entity.RecordSchema),
// keyed by entity token, reporting all violations at once with paths rooted
// at "data_layout".
func (l *Layout) Schemas() (map[string]*RecordSchema, error) {
	out := make(map[string]*RecordSchema, len(l.DataLayout))
	var all []Violation
	for i := range l.DataLayout {
		s, err := l.DataLayout[i].RecordSchema(fmt.Sprintf("data_layout[%d]", i))
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				all = append(all, ve.Violations...)
				continue
			}
			return nil, err
		}
		out[l.DataLayout[i].EntityToken] = s
	}
	if len(all) > 0 {
		return nil, &ValidationError{Subject: "data layout", Violations: all}
	}
	return out, nil
}
