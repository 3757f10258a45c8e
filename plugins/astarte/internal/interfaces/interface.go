package interfaces

import (
	"fmt"
	"strings"
	"time"
)

// Interface is a validated Astarte interface. Build one with Parse; the
// fields are read-only afterwards.
type Interface struct {
	Name        string
	Major       int
	Minor       int
	Type        Type
	Ownership   Ownership
	Aggregation Aggregation
	Description string
	Doc         string
	Mappings    []*Mapping

	// prefix is, for object aggregation, the endpoint segments shared by all
	// mappings (everything but the last segment).
	prefix []segment
	// byKey is, for object aggregation, the mappings by last segment.
	byKey map[string]*Mapping
	// byDepth indexes individual mappings by number of segments.
	byDepth map[int][]*Mapping
	// source is the JSON document the interface was parsed from.
	source []byte
}

// Mapping is one endpoint of an interface with its type and delivery options.
type Mapping struct {
	Endpoint                string
	Type                    MappingType
	Reliability             Reliability
	Retention               Retention
	Expiry                  time.Duration
	ExplicitTimestamp       bool
	AllowUnset              bool
	DatabaseRetentionPolicy DatabaseRetentionPolicy
	DatabaseRetentionTTL    time.Duration
	Description             string
	Doc                     string

	segments []segment
}

// segment is one level of an endpoint: a literal or a %{param}.
type segment struct {
	literal string
	param   string // non-empty for %{param}
}

func (s segment) String() string {
	if s.param != "" {
		return "%{" + s.param + "}"
	}
	return s.literal
}

// IsServerOwned reports whether Astarte publishes on this interface.
func (i *Interface) IsServerOwned() bool { return i.Ownership == ServerOwned }

// IsProperties reports whether the interface is a properties interface.
func (i *Interface) IsProperties() bool { return i.Type == Properties }

// IsObject reports whether the interface is object-aggregated.
func (i *Interface) IsObject() bool { return i.Aggregation == Object }

// Source returns the JSON document the interface was parsed from.
func (i *Interface) Source() []byte { return append([]byte(nil), i.source...) }

// IntrospectionEntry is "name:major:minor".
func (i *Interface) IntrospectionEntry() string {
	return fmt.Sprintf("%s:%d:%d", i.Name, i.Major, i.Minor)
}

// QoS is the MQTT QoS for data of mapping m: 2 for properties, else 0/1/2
// for unreliable/guaranteed/unique.
func (i *Interface) QoS(m *Mapping) byte {
	if i.Type == Properties {
		return 2
	}
	switch m.Reliability {
	case Guaranteed:
		return 1
	case Unique:
		return 2
	default:
		return 0
	}
}

// ObjectMappings returns, for an object-aggregated interface, the mappings
// keyed by the last segment of their endpoint. It is nil otherwise.
func (i *Interface) ObjectMappings() map[string]*Mapping {
	if i.Aggregation != Object {
		return nil
	}
	out := make(map[string]*Mapping, len(i.byKey))
	for k, v := range i.byKey {
		out[k] = v
	}
	return out
}

// Lookup returns the mapping of an individual interface that matches the
// concrete path (e.g. "/sensor1/value" for "/%{id}/value"). Parameter values
// must be non-empty and must not contain "/", "+" or "#".
func (i *Interface) Lookup(path string) (*Mapping, error) {
	if i.Aggregation == Object {
		return nil, PathError(i.Name, path, "interface is object-aggregated: send the whole object on its base path")
	}
	var buf [MaxEndpointSegments]string
	parts, err := splitPath(i.Name, path, buf[:0])
	if err != nil {
		return nil, err
	}
	for _, m := range i.byDepth[len(parts)] {
		if matchSegments(m.segments, parts) {
			return m, nil
		}
	}
	return nil, PathError(i.Name, path, "no mapping matches the path")
}

// LookupObject checks the base path of an object-aggregated interface (the
// endpoints without their last segment, e.g. "/sensor1" for
// "/%{id}/value") and returns the mappings keyed by the last segment.
func (i *Interface) LookupObject(path string) (map[string]*Mapping, error) {
	if i.Aggregation != Object {
		return nil, PathError(i.Name, path, "interface is not object-aggregated: send values one by one")
	}
	var buf [MaxEndpointSegments]string
	parts, err := splitPath(i.Name, path, buf[:0])
	if err != nil {
		return nil, err
	}
	if len(parts) != len(i.prefix) || !matchSegments(i.prefix, parts) {
		return nil, PathError(i.Name, path, "path does not match the object base path %q", joinSegments(i.prefix))
	}
	return i.byKey, nil
}

// MappingFor resolves a path received for this interface: for an individual
// interface the full path; for an object interface the base path followed by
// a key (used for property paths listed by Astarte). It reports the mapping.
func (i *Interface) MappingFor(path string) (*Mapping, error) {
	if i.Aggregation != Object {
		return i.Lookup(path)
	}
	cut := strings.LastIndexByte(path, '/')
	if cut <= 0 {
		return nil, PathError(i.Name, path, "no mapping matches the path")
	}
	byKey, err := i.LookupObject(path[:cut])
	if err != nil {
		return nil, err
	}
	m, ok := byKey[path[cut+1:]]
	if !ok {
		return nil, PathError(i.Name, path, "no mapping matches the path")
	}
	return m, nil
}

// splitPath checks a concrete data path and appends its segments to dst.
func splitPath(iface, path string, dst []string) ([]string, error) {
	if path == "" || path[0] != '/' {
		return nil, PathError(iface, path, "path must start with \"/\"")
	}
	if strings.ContainsAny(path, "+#\x00") {
		return nil, PathError(iface, path, "path must not contain \"+\", \"#\" or NUL")
	}
	if !validUTF8(path) {
		return nil, PathError(iface, path, "path is not valid UTF-8")
	}
	if strings.Count(path, "/") > MaxEndpointSegments {
		return nil, PathError(iface, path, "path has more than %d levels", MaxEndpointSegments)
	}
	parts := dst
	for rest := path[1:]; ; {
		p, after, more := strings.Cut(rest, "/")
		if p == "" {
			return nil, PathError(iface, path, "path has an empty level (parameter values must be non-empty)")
		}
		parts = append(parts, p)
		if !more {
			return parts, nil
		}
		rest = after
	}
}

func matchSegments(segs []segment, parts []string) bool {
	if len(segs) != len(parts) {
		return false
	}
	for k, s := range segs {
		if s.param == "" && s.literal != parts[k] {
			return false
		}
	}
	return true
}

func joinSegments(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s.String())
	}
	return b.String()
}
