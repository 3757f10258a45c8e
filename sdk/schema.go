package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

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
	// quick is the schema compiled for validateLazy's quick check; nil
	// when the schema uses a keyword it does not cover.
	quick *quickNode
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
	doc, compiled, err := compileValidator(name, raw)
	if err != nil {
		return nil, err
	}
	return &schema{raw: raw, compiled: compiled, secretPaths: secretPaths(doc), quick: compileQuick(doc)}, nil
}

// compileValidator decodes raw and compiles it for the validator.
func compileValidator(name string, raw json.RawMessage) (any, *validator.Schema, error) {
	doc, err := validator.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("schema %s is not JSON: %w", name, err)
	}
	c := validator.NewCompiler()
	c.DefaultDraft(validator.Draft2020)
	c.AssertFormat()
	url := "mem:///" + name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, nil, fmt.Errorf("schema %s: %w", name, err)
	}
	compiled, err := c.Compile(url)
	if err != nil {
		return nil, nil, fmt.Errorf("schema %s does not compile: %w", name, err)
	}
	return doc, compiled, nil
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

// validateLazy is validate for a document whose decoded form the caller
// needs only for its secrets: when the schema marks none and the quick
// check proves raw valid, it skips decoding raw and the full validator and
// returns a nil document. Anything the quick check cannot prove (an
// invalid document included) goes through validate, which words the
// errors.
func (s *schema) validateLazy(root string, raw json.RawMessage) (any, error) {
	if s.quick != nil && len(s.secretPaths) == 0 && len(raw) > 0 && json.Valid(raw) {
		c := quickCursor{b: raw}
		if c.value(s.quick) && c.end() {
			return nil, nil
		}
	}
	return s.validate(root, raw)
}

// quickNode is a schema node compiled for the quick check (see
// compileQuick): a yes-or-don't-know test of a raw JSON value that says yes
// only when the full validator would accept the value.
type quickNode struct {
	any   bool  // true or {}: every value
	types uint8 // allowed JSON types (quick* bits); 0: any type
	// Strings.
	minLen, maxLen int // -1: none
	pattern        *regexp.Regexp
	enum           []string
	format         *validator.Schema // the node's format, checked by the validator
	// Numbers.
	hasMin, hasMax bool
	min, max       float64
	// Objects: members by name (node nil: the additional-properties rule);
	// additional members validate against addl, or are refused when
	// noAddl.
	members  map[string]quickMember
	required int // how many members are required (req 0..required-1)
	addl     *quickNode
	noAddl   bool
	// Arrays.
	items              *quickNode
	minItems, maxItems int // -1: none
}

type quickMember struct {
	node *quickNode
	idx  int // index among the members (duplicates are left to the validator)
	req  int // index among the required members, or -1
}

const (
	quickNull uint8 = 1 << iota
	quickBool
	quickInteger
	quickNumber
	quickString
	quickObject
	quickArray
)

var quickTypes = map[string]uint8{"null": quickNull, "boolean": quickBool, "integer": quickInteger,
	"number": quickNumber | quickInteger, "string": quickString, "object": quickObject, "array": quickArray}

// quickAnnotations are keywords that do not constrain a value.
var quickAnnotations = map[string]bool{"$schema": true, "description": true, "title": true, "examples": true,
	"default": true, "$comment": true, "deprecated": true, "readOnly": true, "writeOnly": true}

// compileQuick compiles a schema document (as validator.UnmarshalJSON
// decodes it) for the quick check. It covers what reflected Go types use:
// type, properties, required, additionalProperties, items, min/maxItems,
// min/maxLength, pattern, string enums, format (checked by the validator
// on the string alone), minimum and maximum; a schema with any other
// keyword gets no quick check (nil).
func compileQuick(node any) *quickNode {
	switch n := node.(type) {
	case bool:
		if n {
			return &quickNode{any: true}
		}
		return nil
	case map[string]any:
		q := &quickNode{minLen: -1, maxLen: -1, minItems: -1, maxItems: -1}
		constrained := false
		var required []string
		for k, v := range n {
			if quickAnnotations[k] || strings.HasPrefix(k, "x-") {
				continue
			}
			constrained = true
			ok := true
			switch k {
			case "type":
				switch t := v.(type) {
				case string:
					q.types, ok = quickTypes[t]
				case []any:
					for _, e := range t {
						s, _ := e.(string)
						b, found := quickTypes[s]
						ok = ok && found
						q.types |= b
					}
				default:
					ok = false
				}
			case "properties":
				props, isMap := v.(map[string]any)
				ok = isMap
				if q.members == nil {
					q.members = map[string]quickMember{}
				}
				for name, p := range props {
					c := compileQuick(p)
					if c == nil {
						return nil
					}
					q.members[name] = quickMember{node: c, req: -1}
				}
			case "required":
				list, isList := v.([]any)
				ok = isList
				for _, e := range list {
					s, isStr := e.(string)
					ok = ok && isStr
					required = append(required, s)
				}
			case "additionalProperties":
				if b, isBool := v.(bool); isBool && !b {
					q.noAddl = true
				} else if q.addl = compileQuick(v); q.addl == nil {
					return nil
				}
			case "items":
				if q.items = compileQuick(v); q.items == nil {
					return nil
				}
			case "minItems", "maxItems", "minLength", "maxLength":
				var x int
				if x, ok = quickInt(v); ok {
					switch k {
					case "minItems":
						q.minItems = x
					case "maxItems":
						q.maxItems = x
					case "minLength":
						q.minLen = x
					default:
						q.maxLen = x
					}
				}
			case "minimum", "maximum":
				var f float64
				if f, ok = quickFloat(v); ok {
					if k == "minimum" {
						q.hasMin, q.min = true, f
					} else {
						q.hasMax, q.max = true, f
					}
				}
			case "pattern":
				s, isStr := v.(string)
				var err error
				if q.pattern, err = regexp.Compile(s); !isStr || err != nil {
					ok = false
				}
			case "enum":
				list, isList := v.([]any)
				ok = isList && len(list) > 0
				for _, e := range list {
					s, isStr := e.(string)
					ok = ok && isStr
					q.enum = append(q.enum, s)
				}
			case "format":
				f, isStr := v.(string)
				ok = isStr
				if ok {
					_, compiled, err := compileValidator("format", json.RawMessage(fmt.Sprintf(`{"format":%q}`, f)))
					if ok = err == nil; ok {
						q.format = compiled
					}
				}
			default:
				ok = false
			}
			if !ok {
				return nil
			}
		}
		if len(required) > 0 {
			if q.members == nil {
				q.members = map[string]quickMember{}
			}
			for _, name := range required {
				m, seen := q.members[name]
				if seen && m.req >= 0 {
					continue
				}
				m.req = q.required
				q.required++
				q.members[name] = m
			}
		}
		if len(q.members) > 64 {
			return nil
		}
		idx := 0
		for name, m := range q.members {
			m.idx = idx
			q.members[name] = m
			idx++
		}
		q.any = !constrained
		return q
	}
	return nil
}

func quickInt(v any) (int, bool) {
	f, ok := quickFloat(v)
	if !ok || f < 0 || f != float64(int(f)) {
		return 0, false
	}
	return int(f), true
}

func quickFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil && !strings.ContainsAny(string(x), ".eE") && len(x) <= 15
	case float64:
		return x, x == float64(int64(x)) && x < 1e15 && x > -1e15
	}
	return 0, false
}

// quickCursor walks a raw JSON document that json.Valid accepted.
type quickCursor struct {
	b []byte
	i int
}

func (c *quickCursor) ws() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *quickCursor) end() bool {
	c.ws()
	return c.i == len(c.b)
}

// str reads a string token and returns its contents (without quotes) and
// whether it has escapes.
func (c *quickCursor) str() ([]byte, bool) {
	c.i++ // "
	start, esc := c.i, false
	for c.b[c.i] != '"' {
		if c.b[c.i] == '\\' {
			esc = true
			c.i++
		}
		c.i++
	}
	s := c.b[start:c.i]
	c.i++
	return s, esc
}

// skip passes over one value.
func (c *quickCursor) skip() {
	c.ws()
	switch c.b[c.i] {
	case '"':
		c.str()
	case '{', '[':
		depth := 0
		for {
			switch c.b[c.i] {
			case '"':
				c.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			c.i++
			if depth == 0 {
				return
			}
		}
	default:
		for c.i < len(c.b) {
			switch c.b[c.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			c.i++
		}
	}
}

// value checks one value against q: true only when it is surely valid.
func (c *quickCursor) value(q *quickNode) bool {
	if q.any {
		c.skip()
		return true
	}
	c.ws()
	allowed := func(t uint8) bool { return q.types == 0 || q.types&t != 0 }
	switch c.b[c.i] {
	case '"':
		s, esc := c.str()
		if !allowed(quickString) {
			return false
		}
		if q.minLen < 0 && q.maxLen < 0 && q.pattern == nil && q.enum == nil && q.format == nil {
			return true
		}
		if esc || !utf8.Valid(s) {
			return false
		}
		n := utf8.RuneCount(s)
		if q.minLen >= 0 && n < q.minLen || q.maxLen >= 0 && n > q.maxLen {
			return false
		}
		if q.pattern != nil && !q.pattern.Match(s) {
			return false
		}
		if q.enum != nil && !slices.Contains(q.enum, string(s)) {
			return false
		}
		return q.format == nil || q.format.Validate(string(s)) == nil
	case '{':
		if !allowed(quickObject) {
			return false
		}
		c.i++
		var found, seen uint64
		for {
			c.ws()
			if c.b[c.i] == '}' {
				c.i++
				break
			}
			if c.b[c.i] == ',' {
				c.i++
				c.ws()
			}
			key, esc := c.str()
			c.ws()
			c.i++ // :
			if esc || !utf8.Valid(key) {
				return false
			}
			m, known := q.members[string(key)]
			if known {
				if seen&(1<<m.idx) != 0 {
					return false // a duplicate: the validator sees the last one only
				}
				seen |= 1 << m.idx
			}
			switch {
			case m.node != nil:
				if !c.value(m.node) {
					return false
				}
			case q.noAddl:
				return false
			case q.addl != nil:
				if !c.value(q.addl) {
					return false
				}
			default:
				c.skip()
			}
			if known && m.req >= 0 {
				found |= 1 << m.req
			}
		}
		return q.required == 0 || found == 1<<q.required-1
	case '[':
		if !allowed(quickArray) {
			return false
		}
		c.i++
		n := 0
		for {
			c.ws()
			if c.b[c.i] == ']' {
				c.i++
				break
			}
			if c.b[c.i] == ',' {
				c.i++
			}
			n++
			if q.items != nil {
				if !c.value(q.items) {
					return false
				}
			} else {
				c.skip()
			}
		}
		return (q.minItems < 0 || n >= q.minItems) && (q.maxItems < 0 || n <= q.maxItems)
	case 't', 'f':
		c.skip()
		return allowed(quickBool)
	case 'n':
		c.skip()
		return allowed(quickNull)
	default:
		start := c.i
		c.skip()
		num := c.b[start:c.i]
		integer := !bytes.ContainsAny(num, ".eE")
		if (!integer || !allowed(quickInteger)) && q.types != 0 && q.types&quickNumber == 0 {
			return false
		}
		if !q.hasMin && !q.hasMax {
			return true
		}
		if !integer || len(num) > 15 {
			return false
		}
		f, err := strconv.ParseFloat(string(num), 64)
		return err == nil && (!q.hasMin || f >= q.min) && (!q.hasMax || f <= q.max)
	}
}
