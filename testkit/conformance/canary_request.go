package conformance

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
)

// maxSchemaDepth bounds the walks of schema documents (recursive $refs).
const maxSchemaDepth = 24

// schemaWalker walks one schema document, following local $refs
// ("#/$defs/X", "#/definitions/X").
type schemaWalker struct {
	root map[string]any
}

func newSchemaWalker(raw json.RawMessage) *schemaWalker {
	var root map[string]any
	if json.Unmarshal(raw, &root) != nil {
		return nil
	}
	return &schemaWalker{root: root}
}

// resolve follows a local $ref of node, if any.
func (w *schemaWalker) resolve(node map[string]any) map[string]any {
	for range maxSchemaDepth {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		target, ok := w.pointer(ref)
		if !ok {
			return node
		}
		node = target
	}
	return node
}

// pointer resolves a local JSON pointer like "#/$defs/Event".
func (w *schemaWalker) pointer(ref string) (map[string]any, bool) {
	rest, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, false
	}
	var cur any = w.root
	for _, seg := range strings.Split(strings.TrimPrefix(rest, "/"), "/") {
		if seg == "" {
			continue
		}
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur = m[seg]
	}
	m, ok := cur.(map[string]any)
	return m, ok
}

// subschemas are the combinators whose members describe the same value.
var subschemas = []string{"allOf", "anyOf", "oneOf"}

// hasSecret reports whether node or anything under it is marked x-secret
// and may hold a string.
func (w *schemaWalker) hasSecret(node any, depth int) bool {
	m, ok := node.(map[string]any)
	if !ok || depth > maxSchemaDepth {
		return false
	}
	m = w.resolve(m)
	if markedSecret(m) && mayBeString(m) {
		return true
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for _, p := range props {
			if w.hasSecret(p, depth+1) {
				return true
			}
		}
	}
	for _, key := range []string{"additionalProperties", "items"} {
		if w.hasSecret(m[key], depth+1) {
			return true
		}
	}
	for _, key := range subschemas {
		if list, ok := m[key].([]any); ok {
			for _, sub := range list {
				if w.hasSecret(sub, depth+1) {
					return true
				}
			}
		}
	}
	return false
}

// canaryMember is the member a canary call adds to a map whose values the
// schema marks secret (additionalProperties with "x-secret": true).
const canaryMember = "conformance_secret"

// plant returns value with a canary (from next) in every field that node
// marks x-secret and that may hold a string: the fields value has are
// replaced; with add, the missing ones are added too, with the objects and
// arrays that lead to them. fed receives the path of each canary planted
// (under path, "*" standing for an array element or a map member).
func (w *schemaWalker) plant(node, value any, path string, add bool, next func() string, fed map[string]bool, depth int) any {
	m, ok := node.(map[string]any)
	if !ok || depth > maxSchemaDepth || !w.hasSecret(m, depth) {
		return value
	}
	m = w.resolve(m)
	if markedSecret(m) && mayBeString(m) {
		if _, isString := value.(string); isString || (value == nil && add) {
			fed[path] = true
			return next()
		}
		return value
	}
	for _, key := range subschemas {
		if list, ok := m[key].([]any); ok {
			for _, sub := range list {
				value = w.plant(sub, value, path, add, next, fed, depth+1)
			}
		}
	}
	props, _ := m["properties"].(map[string]any)
	ap := m["additionalProperties"]
	if len(props) > 0 || w.hasSecret(ap, depth+1) {
		obj, isObj := value.(map[string]any)
		switch {
		case isObj:
			obj = cloneMap(obj)
		case value == nil && add:
			obj = map[string]any{}
		default:
			obj = nil
		}
		if obj != nil {
			names := make([]string, 0, len(props))
			for n := range props {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				cur, present := obj[n]
				if !present && !add {
					continue
				}
				if nv := w.plant(props[n], cur, path+"."+n, add, next, fed, depth+1); nv != nil {
					obj[n] = nv
				}
			}
			if w.hasSecret(ap, depth+1) {
				extra := 0
				for k, v := range obj {
					if _, declared := props[k]; !declared {
						extra++
						obj[k] = w.plant(ap, v, path+".*", add, next, fed, depth+1)
					}
				}
				if extra == 0 && add {
					obj[canaryMember] = w.plant(ap, nil, path+".*", add, next, fed, depth+1)
				}
			}
			value = obj
		}
	}
	if items := m["items"]; w.hasSecret(items, depth+1) {
		arr, isArr := value.([]any)
		switch {
		case isArr && len(arr) > 0:
			out := make([]any, len(arr))
			for i, el := range arr {
				out[i] = w.plant(items, el, path+".*", add, next, fed, depth+1)
			}
			value = out
		case (value == nil || isArr) && add:
			value = []any{w.plant(items, nil, path+".*", add, next, fed, depth+1)}
		}
	}
	return value
}

// mask returns value with every field that node marks x-secret replaced by
// a placeholder: a declared secret output (a credential the capability
// hands back to its caller) is where a secret may be, so the secrets check
// looks for canaries everywhere else.
func (w *schemaWalker) mask(node, value any, depth int) any {
	m, ok := node.(map[string]any)
	if !ok || depth > maxSchemaDepth || value == nil {
		return value
	}
	m = w.resolve(m)
	if markedSecret(m) {
		return "[x-secret]"
	}
	for _, key := range subschemas {
		if list, ok := m[key].([]any); ok {
			for _, sub := range list {
				value = w.mask(sub, value, depth+1)
			}
		}
	}
	switch v := value.(type) {
	case map[string]any:
		props, _ := m["properties"].(map[string]any)
		out := make(map[string]any, len(v))
		for k, x := range v {
			if p, declared := props[k]; declared {
				out[k] = w.mask(p, x, depth+1)
			} else {
				out[k] = w.mask(m["additionalProperties"], x, depth+1)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = w.mask(m["items"], x, depth+1)
		}
		return out
	}
	return value
}

// requestWithCanaries returns a copy of a capability's request with a
// canary in every field its request schema marks x-secret: the ones the
// request has, or (with add) all of them. It returns the request unchanged
// and no paths when there is nothing to plant.
func (s *session) requestWithCanaries(capability string, request json.RawMessage, add bool) (json.RawMessage, []string) {
	capa, ok := s.capability(capability)
	if !ok {
		return request, nil
	}
	w := newSchemaWalker(capa.RequestSchema)
	if w == nil || !w.hasSecret(w.root, 0) {
		return request, nil
	}
	var doc any = map[string]any{}
	if len(request) > 0 && json.Unmarshal(request, &doc) != nil {
		return request, nil
	}
	fed := map[string]bool{}
	doc = w.plant(w.root, doc, "request", add, s.newCanary, fed, 0)
	if len(fed) == 0 {
		return request, nil
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return request, nil
	}
	return b, sortedKeys(fed)
}

// requestSecretPaths lists the paths of the x-secret fields of a
// capability's request ("request.credentials_secret", "request.event.auth.*").
func (s *session) requestSecretPaths(capability string) []string {
	capa, ok := s.capability(capability)
	if !ok {
		return nil
	}
	w := newSchemaWalker(capa.RequestSchema)
	if w == nil {
		return nil
	}
	fed := map[string]bool{}
	w.plant(w.root, map[string]any{}, "request", true, func() string { return "" }, fed, 0)
	return sortedKeys(fed)
}

// maskedAnswer renders what a canary call answered (response, raw data,
// page, stream items, error message) as text to search for canaries, with
// the response fields the capability's schema marks x-secret masked.
func (s *session) maskedAnswer(capability string, o *outcome) string {
	var w *schemaWalker
	if capa, ok := s.capability(capability); ok {
		w = newSchemaWalker(capa.ResponseSchema)
	}
	var b strings.Builder
	add := func(label string, raw json.RawMessage, masked bool) {
		if len(raw) == 0 || string(raw) == "null" {
			return
		}
		text := string(raw)
		if v, err := decodeNumbers(raw); err == nil && masked && w != nil {
			if mb, err := json.Marshal(w.mask(w.root, v, 0)); err == nil {
				text = string(mb)
			}
		}
		b.WriteString(label + ": " + text + "\n")
	}
	add("response", o.Response, true)
	add("raw_data", o.RawData, false)
	add("page", o.Page, false)
	for i, it := range o.Items {
		add("item "+strconv.Itoa(i), it, true)
	}
	if o.Err != nil {
		b.WriteString("error: " + o.Err.Message + "\n")
	}
	if o.Malformed != "" {
		b.WriteString("answer: " + o.Malformed + "\n")
	}
	return b.String()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
