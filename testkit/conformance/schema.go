package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"unicode"

	validator "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// draft2020 is the $schema URL of JSON Schema 2020-12.
const draft2020 = "https://json-schema.org/draft/2020-12/schema"

// compileSchema compiles raw as JSON Schema 2020-12 (with format
// assertions, as the SDK validates). name identifies it in errors.
func compileSchema(name string, raw json.RawMessage) (*validator.Schema, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("is empty")
	}
	doc, err := validator.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("is not JSON: %w", err)
	}
	if m, ok := doc.(map[string]any); ok {
		if s, ok := m["$schema"].(string); ok && strings.TrimSuffix(s, "#") != draft2020 {
			return nil, fmt.Errorf("declares $schema %q; it must be JSON Schema 2020-12 (%s)", s, draft2020)
		}
	}
	c := validator.NewCompiler()
	c.DefaultDraft(validator.Draft2020)
	c.AssertFormat()
	url := "mem:///" + strings.NewReplacer("/", "_", " ", "_").Replace(name) + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("cannot be loaded: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("does not compile as JSON Schema 2020-12: %w", err)
	}
	return s, nil
}

// decodeJSON decodes raw for validation (numbers kept exact).
func decodeJSON(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	return validator.UnmarshalJSON(bytes.NewReader(raw))
}

// tryDecode decodes raw for validation, reporting whether it is JSON.
func tryDecode(raw json.RawMessage) (any, bool) {
	doc, err := decodeJSON(raw)
	return doc, err == nil
}

// invalidFields validates raw against s and returns the dotted paths of the
// failing fields under root ("request.count"), or nil when raw is valid.
func invalidFields(s *validator.Schema, root string, raw json.RawMessage) ([]string, error) {
	doc, ok := tryDecode(raw)
	if !ok {
		return []string{root}, nil // not JSON: the whole of root is at fault
	}
	err := s.Validate(doc)
	if err == nil {
		return nil, nil
	}
	var ve *validator.ValidationError
	if !errors.As(err, &ve) {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	var walk func(e *validator.ValidationError)
	walk = func(e *validator.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		loc := append([]string(nil), e.InstanceLocation...)
		var leaves [][]string
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				leaves = append(leaves, append(append([]string(nil), loc...), m))
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				leaves = append(leaves, append(append([]string(nil), loc...), p))
			}
		default:
			leaves = append(leaves, loc)
		}
		for _, l := range leaves {
			p := root
			for _, seg := range l {
				p += "." + seg
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	walk(ve)
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{root}
	}
	return out, nil
}

// validationMessage validates v against s and returns a one-line reason,
// or "" when valid.
func validationMessage(s *validator.Schema, raw json.RawMessage) string {
	doc, err := decodeJSON(raw)
	if err != nil {
		return "not valid JSON: " + err.Error()
	}
	if err := s.Validate(doc); err != nil {
		return strings.Join(strings.Fields(err.Error()), " ")
	}
	return ""
}

// secretWords are the last words of property names that hold a secret.
var secretWords = map[string]bool{
	"password": true, "passwd": true, "passphrase": true, "secret": true,
	"token": true, "apikey": true, "privatekey": true, "credential": true, "credentials": true,
}

// secretPairs are two-word endings that hold a secret.
var secretPairs = map[string]bool{
	"api_key": true, "private_key": true, "secret_key": true, "signing_key": true,
	"encryption_key": true, "master_key": true, "secret_access_key": true,
}

// notSecretTokens are words before "token" that make it a cursor, not a
// credential.
var notSecretTokens = map[string]bool{
	"page": true, "next": true, "continuation": true, "cursor": true, "sync": true,
	"pagination": true, "paging": true, "resume": true, "delta": true, "csrf": true, "state": true,
}

// looksSecret reports whether a property name looks like it holds a
// credential: password, client_secret, api_key, apiKey, access_token,
// private_key, ... but not page_token, token_url or max_tokens.
func looksSecret(name string) bool {
	words := splitWords(name)
	if len(words) == 0 {
		return false
	}
	last := words[len(words)-1]
	if len(words) >= 2 {
		pair := words[len(words)-2] + "_" + last
		if secretPairs[pair] {
			return true
		}
		if last == "token" && notSecretTokens[words[len(words)-2]] {
			return false
		}
	}
	if len(words) >= 3 && secretPairs[strings.Join(words[len(words)-3:], "_")] {
		return true
	}
	return secretWords[last]
}

// splitWords splits snake_case, kebab-case and camelCase names into lower
// case words.
func splitWords(name string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	runes := []rune(name)
	for i, r := range runes {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r):
			// A new word starts at an upper case letter that follows a
			// lower case one, or that starts "Xy" after an acronym.
			if len(cur) > 0 && (unicode.IsLower(runes[i-1]) || (i+1 < len(runes) && unicode.IsLower(runes[i+1]))) {
				flush()
			}
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
	}
	flush()
	return words
}

// unmarkedSecrets walks a schema document and returns the paths (under
// root) of properties whose name looks secret, that may hold a string, and
// that carry no "x-secret" (true, or false to declare that a field named
// like a secret is not one).
func unmarkedSecrets(root string, raw json.RawMessage) []string {
	var doc any
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	var walk func(node any, path string, depth int)
	walk = func(node any, path string, depth int) {
		m, ok := node.(map[string]any)
		if !ok || depth > 32 {
			return
		}
		if props, ok := m["properties"].(map[string]any); ok {
			for name, p := range props {
				pm, _ := p.(map[string]any)
				sub := path + "." + name
				if looksSecret(name) && mayBeString(pm) && !hasSecretMark(pm) && !seen[sub] {
					seen[sub] = true
					out = append(out, sub)
				}
				walk(p, sub, depth+1)
			}
		}
		for _, key := range []string{"items", "additionalProperties"} {
			if sub, ok := m[key]; ok {
				walk(sub, path+"[]", depth+1)
			}
		}
		for _, key := range []string{"$defs", "definitions"} {
			if defs, ok := m[key].(map[string]any); ok {
				for name, d := range defs {
					walk(d, root+"#"+name, depth+1)
				}
			}
		}
		for _, key := range []string{"allOf", "anyOf", "oneOf"} {
			if list, ok := m[key].([]any); ok {
				for _, d := range list {
					walk(d, path, depth+1)
				}
			}
		}
	}
	walk(doc, root, 0)
	sort.Strings(out)
	return out
}

// hasSecretMark reports whether a property schema declares "x-secret" at
// all (true or false).
func hasSecretMark(m map[string]any) bool {
	_, ok := m["x-secret"]
	return ok
}

func markedSecret(m map[string]any) bool {
	v, ok := m["x-secret"]
	return ok && (v == true || v == "true")
}

// mayBeString reports whether a property schema allows a string value (no
// "type", or a type list containing "string").
func mayBeString(m map[string]any) bool {
	if m == nil {
		return true
	}
	switch t := m["type"].(type) {
	case nil:
		return true
	case string:
		return t == "string"
	case []any:
		for _, x := range t {
			if x == "string" {
				return true
			}
		}
		return false
	}
	return true
}

// secretPaths returns the top-level property names marked x-secret in a
// schema, with string-able values, sorted.
func secretProperties(raw json.RawMessage) []string {
	var doc map[string]any
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	props, _ := doc["properties"].(map[string]any)
	var out []string
	for name, p := range props {
		pm, _ := p.(map[string]any)
		if markedSecret(pm) && mayBeString(pm) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// wrongValues are candidate values for a property, one of each JSON type.
var wrongValues = []any{"conformance-not-a-valid-value", 12345, true, []any{"x"}, map[string]any{"conformance": 1}}

// badRequestProbes builds requests that fail s because of one field,
// starting from base (a valid request or {}): a property given a value of
// the wrong type, an unknown member, or a missing required member. Each
// probe is checked against s, so it is known to be invalid; fields are the
// paths local validation reports.
func badRequestProbes(s *validator.Schema, raw json.RawMessage, base json.RawMessage) []probe {
	var schemaDoc map[string]any
	if json.Unmarshal(raw, &schemaDoc) != nil {
		return nil
	}
	var baseObj map[string]any
	if json.Unmarshal(base, &baseObj) != nil || baseObj == nil {
		baseObj = map[string]any{}
	}
	var out []probe
	try := func(label string, req map[string]any) bool {
		b, err := json.Marshal(req)
		if err != nil {
			return false
		}
		fields, err := invalidFields(s, "request", b)
		if err != nil || len(fields) == 0 {
			return false
		}
		out = append(out, probe{Label: label, Request: b, Fields: fields})
		return true
	}
	props, _ := schemaDoc["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Strings(names)
	// A wrong-typed value for the first property that has a type.
	for _, n := range names {
		pm, _ := props[n].(map[string]any)
		if pm == nil || pm["type"] == nil {
			continue
		}
		done := false
		for _, v := range wrongValues {
			if typeAllows(pm["type"], v) {
				continue
			}
			req := cloneMap(baseObj)
			req[n] = v
			if try(fmt.Sprintf("request.%s given a %s", n, jsonTypeName(v)), req) {
				done = true
				break
			}
		}
		if done {
			break
		}
	}
	// An unknown member.
	req := cloneMap(baseObj)
	req["conformance_unknown_field"] = 1
	try("an unknown member request.conformance_unknown_field", req)
	return out
}

// probe is a request known to be invalid, and the fields at fault.
type probe struct {
	Label   string
	Request json.RawMessage
	Fields  []string
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	}
	return "object"
}

// typeAllows reports whether a schema "type" value admits v.
func typeAllows(t any, v any) bool {
	var types []string
	switch x := t.(type) {
	case string:
		types = []string{x}
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				types = append(types, s)
			}
		}
	}
	name := jsonTypeName(v)
	for _, ty := range types {
		if ty == name || (name == "number" && ty == "integer") {
			return true
		}
	}
	return false
}

// matchSubset reports whether got matches want: objects when every member
// of want matches the same member of got, arrays element by element with
// equal lengths, numbers by value, anything else when equal. It returns
// the path of the first mismatch and why.
func matchSubset(path string, want, got any) (bool, string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false, fmt.Sprintf("%s: want an object, got %s", path, short(got))
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				return false, fmt.Sprintf("%s.%s: missing", path, k)
			}
			if ok, why := matchSubset(path+"."+k, w[k], gv); !ok {
				return false, why
			}
		}
		return true, ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			return false, fmt.Sprintf("%s: want an array, got %s", path, short(got))
		}
		if len(g) != len(w) {
			return false, fmt.Sprintf("%s: want %d elements, got %d", path, len(w), len(g))
		}
		for i := range w {
			if ok, why := matchSubset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); !ok {
				return false, why
			}
		}
		return true, ""
	case json.Number:
		g, ok := got.(json.Number)
		if !ok || !numbersEqual(w, g) {
			return false, fmt.Sprintf("%s: want %s, got %s", path, w, short(got))
		}
		return true, ""
	default:
		if want != got {
			return false, fmt.Sprintf("%s: want %s, got %s", path, short(want), short(got))
		}
		return true, ""
	}
}

func numbersEqual(a, b json.Number) bool {
	x, ok1 := new(big.Float).SetString(a.String())
	y, ok2 := new(big.Float).SetString(b.String())
	if !ok1 || !ok2 {
		return a == b
	}
	return x.Cmp(y) == 0
}

// decodeNumbers decodes JSON keeping numbers as json.Number.
func decodeNumbers(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// short renders a JSON value for a message, cut to 80 bytes.
func short(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

// valuesAt returns the values of got at the member paths of want (for
// comparing two answers on the fields a fixture names).
func valuesAt(want, got any) any {
	w, ok := want.(map[string]any)
	if !ok {
		return got
	}
	g, ok := got.(map[string]any)
	if !ok {
		return got
	}
	out := map[string]any{}
	for k, wv := range w {
		out[k] = valuesAt(wv, g[k])
	}
	return out
}
