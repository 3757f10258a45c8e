package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// MaxFileSize bounds the size of a data layout file Load reads.
const MaxFileSize = 16 << 20

// Parse decodes a data layout and enforces every layout rule. It accepts the
// wire document {"data_layout":[...]} (paths rooted at "data_layout"), an
// {"entities":[...]} object or a bare array of entities (paths rooted at
// "entities"). Attributes of the wrong JSON type and unknown attributes are
// violations too; all violations are reported at once in a *ValidationError.
func Parse(data []byte) (*Layout, error) {
	data = bytes.TrimSpace(data)
	var v violations
	root := "entities"
	var list json.RawMessage
	switch {
	case len(data) == 0:
		v.add("", "empty document: expected {\"data_layout\":[...]} or an array of entities")
		return nil, v.err("data layout")
	case data[0] == '[':
		list = data
	case data[0] == '{':
		var top map[string]json.RawMessage
		if err := json.Unmarshal(data, &top); err != nil {
			v.add("", "not valid JSON: "+err.Error())
			return nil, v.err("data layout")
		}
		raw, hasLayout := top["data_layout"]
		rawEntities, hasEntities := top["entities"]
		switch {
		case hasLayout && hasEntities:
			v.add("", `give either "data_layout" or "entities", not both`)
			return nil, v.err("data layout")
		case hasLayout:
			root, list = "data_layout", raw
		case hasEntities:
			list = rawEntities
		default:
			v.add("data_layout", "is required")
			return nil, v.err("data layout")
		}
		for _, k := range sortedKeys(top) {
			if k != "data_layout" && k != "entities" {
				v.add(k, "unknown attribute")
			}
		}
	default:
		v.add("", "expected a JSON object or array")
		return nil, v.err("data layout")
	}

	entities, bad := decodeEntities(list, root, &v)
	var ruleErr *ValidationError
	if errors.As(validateRules(entities, root), &ruleErr) {
		for _, rv := range ruleErr.Violations {
			if !underBad(rv.Path, bad) {
				v = append(v, rv)
			}
		}
	}
	if err := v.err("data layout"); err != nil {
		return nil, err
	}
	return Generate(entities)
}

// Load reads and parses the data layout JSON file at path (see Parse).
func Load(path string) (*Layout, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load data layout: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load data layout %q: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("load data layout %q: file larger than %d bytes", path, MaxFileSize)
	}
	l, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load data layout %q: %w", path, err)
	}
	return l, nil
}

// FromSetting builds the layout from the plugin's data_layout setting: a
// JSON string is a path to a layout file (Load); anything else is the layout
// itself (Parse).
func FromSetting(raw json.RawMessage) (*Layout, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var path string
		if err := json.Unmarshal(raw, &path); err != nil {
			return nil, fmt.Errorf("data_layout: %w", err)
		}
		if path == "" {
			return nil, fmt.Errorf("data_layout: empty file path")
		}
		return Load(path)
	}
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, fmt.Errorf("data_layout: is required")
	}
	return Parse(raw)
}

// decodeEntities decodes list strictly. bad holds the paths that had a type
// error, so that rule checks do not report them a second time.
func decodeEntities(list json.RawMessage, root string, v *violations) ([]Entity, map[string]bool) {
	bad := map[string]bool{}
	var items []json.RawMessage
	if !decodeArray(list, root, v, bad, &items) {
		return nil, bad
	}
	entities := make([]Entity, len(items))
	for i, item := range items {
		ep := fmt.Sprintf("%s[%d]", root, i)
		var obj map[string]json.RawMessage
		if !decodeObject(item, ep, v, bad, &obj) {
			continue
		}
		e := &entities[i]
		for _, k := range sortedKeys(obj) {
			val, p := obj[k], ep+"."+k
			switch k {
			case "entity_name":
				decodeString(val, p, v, bad, &e.EntityName)
			case "treekey":
				decodeString(val, p, v, bad, &e.Treekey)
			case "endpoint_url":
				decodeString(val, p, v, bad, &e.EndpointURL)
			case "entity_token":
				decodeString(val, p, v, bad, &e.EntityToken)
			case "fields":
				e.Fields = decodeFields(val, p, v, bad)
			default:
				v.add(p, "unknown attribute")
			}
		}
	}
	return entities, bad
}

func decodeFields(raw json.RawMessage, path string, v *violations, bad map[string]bool) []Field {
	var items []json.RawMessage
	if !decodeArray(raw, path, v, bad, &items) {
		return nil
	}
	fields := make([]Field, len(items))
	for j, item := range items {
		fp := fmt.Sprintf("%s[%d]", path, j)
		var obj map[string]json.RawMessage
		if !decodeObject(item, fp, v, bad, &obj) {
			continue
		}
		f := &fields[j]
		for _, k := range sortedKeys(obj) {
			val, p := obj[k], fp+"."+k
			switch k {
			case "id":
				decodeString(val, p, v, bad, &f.ID)
			case "treekey":
				decodeString(val, p, v, bad, &f.Treekey)
			case "value":
				decodeString(val, p, v, bad, &f.Value)
			case "type":
				var s string
				decodeString(val, p, v, bad, &s)
				f.Type = FieldType(s)
			case "multiple":
				decodeBool(val, p, v, bad, &f.Multiple)
			case "date_format":
				decodeString(val, p, v, bad, &f.DateFormat)
			case "required":
				decodeBool(val, p, v, bad, &f.Required)
			case "functions":
				var fns []json.RawMessage
				if decodeArray(val, p, v, bad, &fns) {
					f.Functions = make([]string, len(fns))
					for n, fn := range fns {
						decodeString(fn, fmt.Sprintf("%s[%d]", p, n), v, bad, &f.Functions[n])
					}
				}
			case "primary_key":
				decodeBool(val, p, v, bad, &f.PrimaryKey)
			case "foreign_key":
				decodeString(val, p, v, bad, &f.ForeignKey)
			case "bool_settings":
				decodeString(val, p, v, bad, &f.BoolSettings)
			case "name":
				decodeString(val, p, v, bad, &f.Name)
			case "description":
				decodeString(val, p, v, bad, &f.Description)
			default:
				v.add(p, "unknown attribute")
			}
		}
	}
	return fields
}

// The decodeX helpers treat JSON null as absent and record a type violation
// (marking the path bad) otherwise. They report whether dst was set.

func decodeString(raw json.RawMessage, path string, v *violations, bad map[string]bool, dst *string) bool {
	return decodeKind(raw, path, "a string", '"', v, bad, dst)
}

func decodeBool(raw json.RawMessage, path string, v *violations, bad map[string]bool, dst *bool) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == 'f' {
		return decodeKind(raw, path, "a boolean", 'f', v, bad, dst)
	}
	return decodeKind(raw, path, "a boolean", 't', v, bad, dst)
}

func decodeArray(raw json.RawMessage, path string, v *violations, bad map[string]bool, dst *[]json.RawMessage) bool {
	return decodeKind(raw, path, "an array", '[', v, bad, dst)
}

func decodeObject(raw json.RawMessage, path string, v *violations, bad map[string]bool, dst *map[string]json.RawMessage) bool {
	return decodeKind(raw, path, "an object", '{', v, bad, dst)
}

func decodeKind[T any](raw json.RawMessage, path, want string, first byte, v *violations, bad map[string]bool, dst *T) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return false
	}
	if raw[0] != first {
		v.add(path, "must be "+want)
		bad[path] = true
		return false
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		v.add(path, "must be "+want+": "+err.Error())
		bad[path] = true
		return false
	}
	return true
}

// underBad reports whether path or one of its ancestors had a type error.
func underBad(path string, bad map[string]bool) bool {
	for {
		if bad[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return false
		}
		path = path[:i]
	}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
