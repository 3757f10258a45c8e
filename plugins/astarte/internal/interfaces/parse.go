package interfaces

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// nameRE is a reverse-domain name: at least two dot-separated labels; the
// first and the last start with a letter and are alphanumeric, the middle
// ones may also hold "-" (e.g. "org.astarte-platform.genericsensors.Values").
var nameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]*(\.[a-zA-Z0-9][a-zA-Z0-9-]*)*\.[a-zA-Z][a-zA-Z0-9]*$`)

// identRE is an endpoint segment or parameter name.
var identRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ParseFile reads and parses an interface JSON file.
func ParseFile(path string) (*Interface, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("interface file: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("interface file: %w", err)
	}
	if st.Size() > MaxDefinitionSize {
		return nil, &Error{Reason: fmt.Sprintf("file %s is larger than %d bytes", path, MaxDefinitionSize)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("interface file: %w", err)
	}
	iface, err := Parse(data)
	var e *Error
	if errors.As(err, &e) {
		e.Reason += fmt.Sprintf(" (file %s)", path)
	}
	return iface, err
}

// Parse parses and validates an interface JSON document. Every broken rule is
// reported as an *Error naming the interface, the field and the reason.
func Parse(data []byte) (*Interface, error) {
	if len(data) > MaxDefinitionSize {
		return nil, &Error{Reason: fmt.Sprintf("definition is larger than %d bytes", MaxDefinitionSize)}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, &Error{Reason: "definition is not a JSON object: " + jsonReason(err)}
	}
	if obj == nil {
		return nil, &Error{Reason: "definition is not a JSON object: null"}
	}
	p := parser{obj: obj}
	name, ok, err := p.str("interface_name", obj, "interface_name")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fieldError("", "interface_name", "is required")
	}
	p.name = name
	if len(name) > MaxNameLength {
		return nil, fieldError(name, "interface_name", "is longer than %d characters", MaxNameLength)
	}
	if !nameRE.MatchString(name) {
		return nil, fieldError(name, "interface_name", "must be a reverse-domain name such as \"com.example.Sensor\" (letters, digits, dots; \"-\" only inside middle labels)")
	}
	iface := &Interface{Name: name, source: bytes.TrimSpace(append([]byte(nil), data...))}
	if iface.Major, err = p.requiredInt("version_major"); err != nil {
		return nil, err
	}
	if iface.Minor, err = p.requiredInt("version_minor"); err != nil {
		return nil, err
	}
	if iface.Major < 0 {
		return nil, fieldError(name, "version_major", "must not be negative")
	}
	if iface.Minor < 0 {
		return nil, fieldError(name, "version_minor", "must not be negative")
	}
	if iface.Major == 0 && iface.Minor == 0 {
		return nil, fieldError(name, "version_major", "version_major and version_minor must not both be 0")
	}
	typ, err := p.enum("type", true, "", string(Datastream), string(Properties))
	if err != nil {
		return nil, err
	}
	iface.Type = Type(typ)
	own, err := p.enum("ownership", true, "", string(DeviceOwned), string(ServerOwned))
	if err != nil {
		return nil, err
	}
	iface.Ownership = Ownership(own)
	agg, err := p.enum("aggregation", false, string(Individual), string(Individual), string(Object))
	if err != nil {
		return nil, err
	}
	iface.Aggregation = Aggregation(agg)
	if iface.Type == Properties && iface.Aggregation == Object {
		return nil, fieldError(name, "aggregation", "properties interfaces cannot be object-aggregated")
	}
	if iface.Description, _, err = p.str("description", obj, "description"); err != nil {
		return nil, err
	}
	if iface.Doc, _, err = p.str("doc", obj, "doc"); err != nil {
		return nil, err
	}
	// The legacy interface-level explicit_timestamp applies to every mapping.
	ifaceExplicit, hasIfaceExplicit, err := p.boolean("explicit_timestamp", obj, "explicit_timestamp")
	if err != nil {
		return nil, err
	}
	if hasIfaceExplicit && ifaceExplicit && iface.Type == Properties {
		return nil, fieldError(name, "explicit_timestamp", "is only allowed on datastream interfaces")
	}

	rawMappings, ok := obj["mappings"]
	if !ok || isNull(rawMappings) {
		return nil, fieldError(name, "mappings", "is required")
	}
	var list []json.RawMessage
	if err := json.Unmarshal(rawMappings, &list); err != nil {
		return nil, fieldError(name, "mappings", "must be an array")
	}
	if len(list) < 1 {
		return nil, fieldError(name, "mappings", "must hold at least 1 mapping")
	}
	if len(list) > MaxMappings {
		return nil, fieldError(name, "mappings", "must hold at most %d mappings, has %d", MaxMappings, len(list))
	}
	for k, raw := range list {
		m, err := p.mapping(iface, fmt.Sprintf("mappings[%d]", k), raw, ifaceExplicit)
		if err != nil {
			return nil, err
		}
		iface.Mappings = append(iface.Mappings, m)
	}
	if err := checkAmbiguity(iface); err != nil {
		return nil, err
	}
	if iface.Aggregation == Object {
		if err := checkObject(iface); err != nil {
			return nil, err
		}
	} else {
		iface.byDepth = make(map[int][]*Mapping)
		for _, m := range iface.Mappings {
			iface.byDepth[len(m.segments)] = append(iface.byDepth[len(m.segments)], m)
		}
	}
	return iface, nil
}

type parser struct {
	name string
	obj  map[string]json.RawMessage
}

func (p *parser) mapping(iface *Interface, field string, raw json.RawMessage, ifaceExplicit bool) (*Mapping, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, fieldError(p.name, field, "must be a JSON object")
	}
	f := func(k string) string { return field + "." + k }
	m := &Mapping{}
	endpoint, ok, err := p.str(f("endpoint"), obj, "endpoint")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fieldError(p.name, f("endpoint"), "is required")
	}
	m.Endpoint = endpoint
	if m.segments, err = parseEndpoint(endpoint); err != nil {
		return nil, fieldError(p.name, f("endpoint"), "%q: %s", endpoint, err.Error())
	}
	typ, ok, err := p.str(f("type"), obj, "type")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fieldError(p.name, f("type"), "is required")
	}
	m.Type = MappingType(typ)
	if !m.Type.Valid() {
		return nil, fieldError(p.name, f("type"), "%q is not an Astarte type (want one of %s)", typ, typeList())
	}
	datastream := iface.Type == Datastream

	rel, hasRel, err := p.str(f("reliability"), obj, "reliability")
	if err != nil {
		return nil, err
	}
	m.Reliability = Reliability(rel)
	switch {
	case !hasRel:
		m.Reliability = Unreliable
		if !datastream {
			m.Reliability = Unique
		}
	case m.Reliability != Unreliable && m.Reliability != Guaranteed && m.Reliability != Unique:
		return nil, fieldError(p.name, f("reliability"), "%q is not one of unreliable, guaranteed, unique", rel)
	case !datastream && m.Reliability != Unique:
		return nil, fieldError(p.name, f("reliability"), "is only allowed on datastream interfaces (properties are always unique)")
	}

	ret, hasRet, err := p.str(f("retention"), obj, "retention")
	if err != nil {
		return nil, err
	}
	m.Retention = Retention(ret)
	switch {
	case !hasRet:
		m.Retention = Discard
	case m.Retention != Discard && m.Retention != Volatile && m.Retention != Stored:
		return nil, fieldError(p.name, f("retention"), "%q is not one of discard, volatile, stored", ret)
	case !datastream && m.Retention != Discard:
		return nil, fieldError(p.name, f("retention"), "is only allowed on datastream interfaces")
	}

	expiry, hasExpiry, err := p.integer(f("expiry"), obj, "expiry")
	if err != nil {
		return nil, err
	}
	if hasExpiry && expiry != 0 && !datastream {
		return nil, fieldError(p.name, f("expiry"), "is only allowed on datastream interfaces")
	}
	if expiry > math.MaxInt32 {
		return nil, fieldError(p.name, f("expiry"), "is larger than %d seconds", math.MaxInt32)
	}
	if expiry < 0 {
		return nil, fieldError(p.name, f("expiry"), "must not be negative (0 means never expires)")
	}
	if expiry > 0 { // 0 means never expires
		m.Expiry = time.Duration(expiry) * time.Second
	}

	explicit, hasExplicit, err := p.boolean(f("explicit_timestamp"), obj, "explicit_timestamp")
	if err != nil {
		return nil, err
	}
	if hasExplicit && explicit && !datastream {
		return nil, fieldError(p.name, f("explicit_timestamp"), "is only allowed on datastream interfaces")
	}
	m.ExplicitTimestamp = explicit || (datastream && ifaceExplicit)

	unset, _, err := p.boolean(f("allow_unset"), obj, "allow_unset")
	if err != nil {
		return nil, err
	}
	if unset && datastream {
		return nil, fieldError(p.name, f("allow_unset"), "is only allowed on properties interfaces")
	}
	m.AllowUnset = unset

	pol, hasPol, err := p.str(f("database_retention_policy"), obj, "database_retention_policy")
	if err != nil {
		return nil, err
	}
	m.DatabaseRetentionPolicy = DatabaseRetentionPolicy(pol)
	switch {
	case !hasPol:
		m.DatabaseRetentionPolicy = NoTTL
	case m.DatabaseRetentionPolicy != NoTTL && m.DatabaseRetentionPolicy != UseTTL:
		return nil, fieldError(p.name, f("database_retention_policy"), "%q is not one of no_ttl, use_ttl", pol)
	case !datastream && m.DatabaseRetentionPolicy != NoTTL:
		return nil, fieldError(p.name, f("database_retention_policy"), "is only allowed on datastream interfaces")
	}
	ttl, hasTTL, err := p.integer(f("database_retention_ttl"), obj, "database_retention_ttl")
	if err != nil {
		return nil, err
	}
	switch {
	case m.DatabaseRetentionPolicy == UseTTL && !hasTTL:
		return nil, fieldError(p.name, f("database_retention_ttl"), "is required when database_retention_policy is use_ttl")
	case hasTTL && m.DatabaseRetentionPolicy != UseTTL:
		return nil, fieldError(p.name, f("database_retention_ttl"), "is only allowed when database_retention_policy is use_ttl")
	case hasTTL && (ttl < MinDatabaseRetentionTTL || ttl > math.MaxInt32):
		return nil, fieldError(p.name, f("database_retention_ttl"), "must be between %d and %d seconds", MinDatabaseRetentionTTL, math.MaxInt32)
	}
	m.DatabaseRetentionTTL = time.Duration(ttl) * time.Second

	if m.Description, _, err = p.str(f("description"), obj, "description"); err != nil {
		return nil, err
	}
	if m.Doc, _, err = p.str(f("doc"), obj, "doc"); err != nil {
		return nil, err
	}
	return m, nil
}

// parseEndpoint splits "/a/%{p}/b" into segments.
func parseEndpoint(endpoint string) ([]segment, error) {
	if len(endpoint) < 2 || endpoint[0] != '/' {
		return nil, fmt.Errorf("must start with \"/\" and name at least one level")
	}
	parts := strings.Split(endpoint[1:], "/")
	if len(parts) > MaxEndpointSegments {
		return nil, fmt.Errorf("has more than %d levels", MaxEndpointSegments)
	}
	segs := make([]segment, 0, len(parts))
	params := map[string]bool{}
	for _, part := range parts {
		switch {
		case part == "":
			return nil, fmt.Errorf("has an empty level")
		case strings.HasPrefix(part, "%{") && strings.HasSuffix(part, "}"):
			name := part[2 : len(part)-1]
			if !identRE.MatchString(name) {
				return nil, fmt.Errorf("parameter %q must be letters, digits and \"_\", not starting with a digit", part)
			}
			if params[name] {
				return nil, fmt.Errorf("parameter %q appears twice", name)
			}
			params[name] = true
			segs = append(segs, segment{param: name})
		case identRE.MatchString(part):
			segs = append(segs, segment{literal: part})
		default:
			return nil, fmt.Errorf("level %q must be letters, digits and \"_\" (not starting with a digit) or a %%{parameter}", part)
		}
	}
	return segs, nil
}

// checkAmbiguity rejects two endpoints that can match the same concrete path:
// same depth, and at every level equal literals or at least one parameter.
func checkAmbiguity(iface *Interface) error {
	byDepth := map[int][]int{}
	for k, m := range iface.Mappings {
		byDepth[len(m.segments)] = append(byDepth[len(m.segments)], k)
	}
	for _, idx := range byDepth {
		for a := 0; a < len(idx); a++ {
			for b := a + 1; b < len(idx); b++ {
				ma, mb := iface.Mappings[idx[a]], iface.Mappings[idx[b]]
				if overlap(ma.segments, mb.segments) {
					return fieldError(iface.Name, fmt.Sprintf("mappings[%d].endpoint", idx[b]),
						"%q is ambiguous with mappings[%d] %q: both match the same paths", mb.Endpoint, idx[a], ma.Endpoint)
				}
			}
		}
	}
	return nil
}

func overlap(a, b []segment) bool {
	for k := range a {
		if a[k].param == "" && b[k].param == "" && a[k].literal != b[k].literal {
			return false
		}
	}
	return true
}

// checkObject enforces the object-aggregation rules: every endpoint has at
// least two levels, all share the same base (every level but the last), the
// last level is a literal, and every mapping has the same delivery options.
func checkObject(iface *Interface) error {
	first := iface.Mappings[0]
	iface.byKey = make(map[string]*Mapping, len(iface.Mappings))
	for k, m := range iface.Mappings {
		field := fmt.Sprintf("mappings[%d]", k)
		if len(m.segments) < 2 {
			return fieldError(iface.Name, field+".endpoint", "%q: object-aggregated endpoints need at least two levels", m.Endpoint)
		}
		last := m.segments[len(m.segments)-1]
		if last.param != "" {
			return fieldError(iface.Name, field+".endpoint", "%q: the last level of an object-aggregated endpoint cannot be a parameter", m.Endpoint)
		}
		base := joinSegments(m.segments[:len(m.segments)-1])
		if want := joinSegments(first.segments[:len(first.segments)-1]); base != want {
			return fieldError(iface.Name, field+".endpoint", "%q: object-aggregated endpoints must share the base %q", m.Endpoint, want)
		}
		iface.byKey[last.literal] = m
		for _, c := range []struct {
			name     string
			got, exp any
		}{
			{"reliability", m.Reliability, first.Reliability},
			{"retention", m.Retention, first.Retention},
			{"expiry", m.Expiry, first.Expiry},
			{"explicit_timestamp", m.ExplicitTimestamp, first.ExplicitTimestamp},
			{"database_retention_policy", m.DatabaseRetentionPolicy, first.DatabaseRetentionPolicy},
			{"database_retention_ttl", m.DatabaseRetentionTTL, first.DatabaseRetentionTTL},
		} {
			if c.got != c.exp {
				return fieldError(iface.Name, field+"."+c.name, "object-aggregated mappings must all have the same %s as mappings[0]", c.name)
			}
		}
	}
	iface.prefix = first.segments[:len(first.segments)-1]
	return nil
}

func (p *parser) requiredInt(key string) (int, error) {
	v, ok, err := p.integer(key, p.obj, key)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fieldError(p.name, key, "is required")
	}
	return int(v), nil
}

func (p *parser) enum(key string, required bool, def string, allowed ...string) (string, error) {
	v, ok, err := p.str(key, p.obj, key)
	if err != nil {
		return "", err
	}
	if !ok {
		if required {
			return "", fieldError(p.name, key, "is required")
		}
		return def, nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", fieldError(p.name, key, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

func (p *parser) str(field string, obj map[string]json.RawMessage, key string) (string, bool, error) {
	raw, ok := obj[key]
	if !ok || isNull(raw) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fieldError(p.name, field, "must be a string")
	}
	return s, true, nil
}

func (p *parser) boolean(field string, obj map[string]json.RawMessage, key string) (bool, bool, error) {
	raw, ok := obj[key]
	if !ok || isNull(raw) {
		return false, false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, false, fieldError(p.name, field, "must be true or false")
	}
	return b, true, nil
}

func (p *parser) integer(field string, obj map[string]json.RawMessage, key string) (int64, bool, error) {
	raw, ok := obj[key]
	if !ok || isNull(raw) {
		return 0, false, nil
	}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] == '"' {
		return 0, false, fieldError(p.name, field, "must be an integer")
	}
	var n json.Number
	if err := json.Unmarshal(t, &n); err != nil {
		return 0, false, fieldError(p.name, field, "must be an integer")
	}
	v, err := n.Int64()
	if err != nil || v > math.MaxInt32 || v < math.MinInt32 {
		return 0, false, fieldError(p.name, field, "must be an integer between %d and %d", math.MinInt32, math.MaxInt32)
	}
	return v, true, nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("got JSON %s", te.Value)
	}
	return err.Error()
}

func typeList() string {
	var s []string
	for _, t := range MappingTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

func validUTF8(s string) bool { return utf8.ValidString(s) }
