package interfaces

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sensorValues = `{
  "interface_name": "org.astarte-platform.genericsensors.Values",
  "version_major": 1,
  "version_minor": 2,
  "type": "datastream",
  "ownership": "device",
  "description": "Generic sensors sampled data.",
  "mappings": [
    {"endpoint": "/%{sensor_id}/value", "type": "double", "explicit_timestamp": true,
     "reliability": "guaranteed", "retention": "stored", "expiry": 60,
     "database_retention_policy": "use_ttl", "database_retention_ttl": 3600}
  ]
}`

const geoObject = `{
  "interface_name": "org.astarte-platform.genericsensors.Geolocation",
  "version_major": 0, "version_minor": 1,
  "type": "datastream", "ownership": "device", "aggregation": "object",
  "mappings": [
    {"endpoint": "/%{id}/latitude", "type": "double", "reliability": "unique", "explicit_timestamp": true},
    {"endpoint": "/%{id}/longitude", "type": "double", "reliability": "unique", "explicit_timestamp": true},
    {"endpoint": "/%{id}/tags", "type": "stringarray", "reliability": "unique", "explicit_timestamp": true}
  ]
}`

const serverProps = `{
  "interface_name": "org.astarte-platform.genericsensors.SamplingRate",
  "version_major": 1, "version_minor": 0,
  "type": "properties", "ownership": "server",
  "mappings": [
    {"endpoint": "/%{sensor_id}/enable", "type": "boolean", "allow_unset": true},
    {"endpoint": "/%{sensor_id}/samplingPeriod", "type": "integer", "allow_unset": true},
    {"endpoint": "/global/name", "type": "string", "reliability": "unique"}
  ]
}`

func TestParseValid(t *testing.T) {
	t.Parallel()
	i, err := Parse([]byte(sensorValues))
	if err != nil {
		t.Fatal(err)
	}
	if i.Name != "org.astarte-platform.genericsensors.Values" || i.Major != 1 || i.Minor != 2 {
		t.Fatalf("name/version = %s %d.%d", i.Name, i.Major, i.Minor)
	}
	if i.Type != Datastream || i.Ownership != DeviceOwned || i.Aggregation != Individual {
		t.Fatalf("type/ownership/aggregation = %s %s %s", i.Type, i.Ownership, i.Aggregation)
	}
	m := i.Mappings[0]
	if m.Type != Double || m.Reliability != Guaranteed || m.Retention != Stored || m.Expiry != time.Minute ||
		!m.ExplicitTimestamp || m.DatabaseRetentionPolicy != UseTTL || m.DatabaseRetentionTTL != time.Hour {
		t.Fatalf("mapping = %+v", m)
	}
	if got := i.QoS(m); got != 1 {
		t.Fatalf("QoS = %d, want 1", got)
	}
	if i.IntrospectionEntry() != "org.astarte-platform.genericsensors.Values:1:2" {
		t.Fatal(i.IntrospectionEntry())
	}

	p, err := Parse([]byte(serverProps))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Mappings {
		if p.QoS(m) != 2 {
			t.Fatalf("properties QoS = %d", p.QoS(m))
		}
		if m.Reliability != Unique || m.Retention != Discard {
			t.Fatalf("properties defaults = %+v", m)
		}
	}
	if !p.IsServerOwned() || !p.IsProperties() || p.IsObject() {
		t.Fatal("flags wrong")
	}

	o, err := Parse([]byte(geoObject))
	if err != nil {
		t.Fatal(err)
	}
	keys := o.ObjectMappings()
	if len(keys) != 3 || keys["tags"].Type != StringArray || o.QoS(keys["latitude"]) != 2 {
		t.Fatalf("object mappings = %v", keys)
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	i, err := Parse([]byte(`{"interface_name":"a.B","version_major":0,"version_minor":1,"type":"datastream",
		"ownership":"device","mappings":[{"endpoint":"/x","type":"integer"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	m := i.Mappings[0]
	if i.Aggregation != Individual || m.Reliability != Unreliable || m.Retention != Discard ||
		m.Expiry != 0 || m.ExplicitTimestamp || m.AllowUnset || m.DatabaseRetentionPolicy != NoTTL {
		t.Fatalf("defaults = %+v %+v", i, m)
	}
	if i.QoS(m) != 0 {
		t.Fatal("unreliable QoS must be 0")
	}
}

func TestInterfaceLevelExplicitTimestamp(t *testing.T) {
	t.Parallel()
	i, err := Parse([]byte(`{"interface_name":"a.B","version_major":1,"version_minor":0,"type":"datastream",
		"ownership":"device","explicit_timestamp":true,"mappings":[{"endpoint":"/x","type":"integer"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !i.Mappings[0].ExplicitTimestamp {
		t.Fatal("interface-level explicit_timestamp not applied")
	}
}

// base returns a valid definition as a map the tests can break.
func base(typ, own, agg string, mappings ...map[string]any) map[string]any {
	d := map[string]any{"interface_name": "com.example.Test", "version_major": 1, "version_minor": 0,
		"type": typ, "ownership": own}
	if agg != "" {
		d["aggregation"] = agg
	}
	ms := make([]any, len(mappings))
	for k, m := range mappings {
		ms[k] = m
	}
	d["mappings"] = ms
	return d
}

func mp(endpoint, typ string, kv ...any) map[string]any {
	m := map[string]any{"endpoint": endpoint, "type": typ}
	for k := 0; k+1 < len(kv); k += 2 {
		m[kv[k].(string)] = kv[k+1]
	}
	return m
}

func with(d map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range d {
		out[k] = v
	}
	for k := 0; k+1 < len(kv); k += 2 {
		if kv[k+1] == nil {
			delete(out, kv[k].(string))
			continue
		}
		out[kv[k].(string)] = kv[k+1]
	}
	return out
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	ds := base("datastream", "device", "", mp("/v", "double"))
	props := base("properties", "device", "", mp("/v", "double"))
	many := make([]any, MaxMappings+1)
	for k := range many {
		many[k] = mp(fmt.Sprintf("/m%d", k), "double")
	}
	tooDeep := strings.Repeat("/a", MaxEndpointSegments+1)
	cases := []struct {
		name  string
		doc   any // map or raw string
		field string
		want  string
	}{
		{"not json", "{", "", "not a JSON object"},
		{"array", "[]", "", "not a JSON object"},
		{"null", "null", "", "not a JSON object"},
		{"missing name", with(ds, "interface_name", nil), "interface_name", "is required"},
		{"name not string", with(ds, "interface_name", 5), "interface_name", "must be a string"},
		{"name single label", with(ds, "interface_name", "Sensor"), "interface_name", "reverse-domain"},
		{"name starts with digit", with(ds, "interface_name", "1com.example.X"), "interface_name", "reverse-domain"},
		{"name with space", with(ds, "interface_name", "com.example.My Sensor"), "interface_name", "reverse-domain"},
		{"name trailing dot", with(ds, "interface_name", "com.example."), "interface_name", "reverse-domain"},
		{"name hyphen in last", with(ds, "interface_name", "com.example.my-sensor"), "interface_name", "reverse-domain"},
		{"name too long", with(ds, "interface_name", "com."+strings.Repeat("a", 125)), "interface_name", "longer than 128"},
		{"missing major", with(ds, "version_major", nil), "version_major", "is required"},
		{"missing minor", with(ds, "version_minor", nil), "version_minor", "is required"},
		{"major float", with(ds, "version_major", 1.5), "version_major", "must be an integer"},
		{"major string", with(ds, "version_major", "1"), "version_major", "must be an integer"},
		{"major negative", with(ds, "version_major", -1), "version_major", "must not be negative"},
		{"minor negative", with(ds, "version_minor", -1), "version_minor", "must not be negative"},
		{"both zero", with(ds, "version_major", 0, "version_minor", 0), "version_major", "must not both be 0"},
		{"missing type", with(ds, "type", nil), "type", "is required"},
		{"bad type", with(ds, "type", "stream"), "type", "is not one of datastream, properties"},
		{"missing ownership", with(ds, "ownership", nil), "ownership", "is required"},
		{"bad ownership", with(ds, "ownership", "producer"), "ownership", "is not one of device, server"},
		{"bad aggregation", with(ds, "aggregation", "group"), "aggregation", "is not one of individual, object"},
		{"properties object", with(props, "aggregation", "object"), "aggregation", "cannot be object-aggregated"},
		{"properties iface explicit ts", with(props, "explicit_timestamp", true), "explicit_timestamp", "only allowed on datastream"},
		{"description not string", with(ds, "description", 1), "description", "must be a string"},
		{"missing mappings", with(ds, "mappings", nil), "mappings", "is required"},
		{"mappings not array", with(ds, "mappings", map[string]any{}), "mappings", "must be an array"},
		{"no mappings", with(ds, "mappings", []any{}), "mappings", "at least 1"},
		{"too many mappings", with(ds, "mappings", many), "mappings", "at most 1024"},
		{"mapping not object", with(ds, "mappings", []any{"x"}), "mappings[0]", "must be a JSON object"},
		{"missing endpoint", with(ds, "mappings", []any{map[string]any{"type": "double"}}), "mappings[0].endpoint", "is required"},
		{"endpoint no slash", with(ds, "mappings", []any{mp("v", "double")}), "mappings[0].endpoint", "must start with"},
		{"endpoint root", with(ds, "mappings", []any{mp("/", "double")}), "mappings[0].endpoint", "must start with"},
		{"endpoint trailing slash", with(ds, "mappings", []any{mp("/a/", "double")}), "mappings[0].endpoint", "empty level"},
		{"endpoint double slash", with(ds, "mappings", []any{mp("/a//b", "double")}), "mappings[0].endpoint", "empty level"},
		{"endpoint bad char", with(ds, "mappings", []any{mp("/a-b", "double")}), "mappings[0].endpoint", "must be letters"},
		{"endpoint wildcard", with(ds, "mappings", []any{mp("/a/+", "double")}), "mappings[0].endpoint", "must be letters"},
		{"endpoint bad param", with(ds, "mappings", []any{mp("/%{1x}", "double")}), "mappings[0].endpoint", "parameter"},
		{"endpoint unclosed param", with(ds, "mappings", []any{mp("/%{x", "double")}), "mappings[0].endpoint", "must be letters"},
		{"endpoint dup param", with(ds, "mappings", []any{mp("/%{x}/%{x}", "double")}), "mappings[0].endpoint", "appears twice"},
		{"endpoint too deep", with(ds, "mappings", []any{mp(tooDeep, "double")}), "mappings[0].endpoint", "more than 64"},
		{"missing mapping type", with(ds, "mappings", []any{map[string]any{"endpoint": "/v"}}), "mappings[0].type", "is required"},
		{"bad mapping type", with(ds, "mappings", []any{mp("/v", "float")}), "mappings[0].type", "not an Astarte type"},
		{"bad reliability", with(ds, "mappings", []any{mp("/v", "double", "reliability", "sometimes")}), "mappings[0].reliability", "not one of"},
		{"bad retention", with(ds, "mappings", []any{mp("/v", "double", "retention", "forever")}), "mappings[0].retention", "not one of"},
		{"expiry float", with(ds, "mappings", []any{mp("/v", "double", "expiry", 1.5)}), "mappings[0].expiry", "must be an integer"},
		{"expiry huge", with(ds, "mappings", []any{mp("/v", "double", "expiry", 1e12)}), "mappings[0].expiry", "must be an integer between"},
		{"explicit ts not bool", with(ds, "mappings", []any{mp("/v", "double", "explicit_timestamp", "yes")}), "mappings[0].explicit_timestamp", "true or false"},
		{"allow_unset on datastream", with(ds, "mappings", []any{mp("/v", "double", "allow_unset", true)}), "mappings[0].allow_unset", "only allowed on properties"},
		{"reliability on properties", with(props, "mappings", []any{mp("/v", "double", "reliability", "guaranteed")}), "mappings[0].reliability", "only allowed on datastream"},
		{"retention on properties", with(props, "mappings", []any{mp("/v", "double", "retention", "stored")}), "mappings[0].retention", "only allowed on datastream"},
		{"expiry on properties", with(props, "mappings", []any{mp("/v", "double", "expiry", 10)}), "mappings[0].expiry", "only allowed on datastream"},
		{"explicit ts on properties", with(props, "mappings", []any{mp("/v", "double", "explicit_timestamp", true)}), "mappings[0].explicit_timestamp", "only allowed on datastream"},
		{"db retention on properties", with(props, "mappings", []any{mp("/v", "double", "database_retention_policy", "use_ttl", "database_retention_ttl", 100)}), "mappings[0].database_retention_policy", "only allowed on datastream"},
		{"bad db policy", with(ds, "mappings", []any{mp("/v", "double", "database_retention_policy", "sometimes")}), "mappings[0].database_retention_policy", "not one of"},
		{"use_ttl without ttl", with(ds, "mappings", []any{mp("/v", "double", "database_retention_policy", "use_ttl")}), "mappings[0].database_retention_ttl", "is required"},
		{"ttl without use_ttl", with(ds, "mappings", []any{mp("/v", "double", "database_retention_ttl", 100)}), "mappings[0].database_retention_ttl", "only allowed when"},
		{"ttl too small", with(ds, "mappings", []any{mp("/v", "double", "database_retention_policy", "use_ttl", "database_retention_ttl", 59)}), "mappings[0].database_retention_ttl", "between 60"},
		{"duplicate endpoint", with(ds, "mappings", []any{mp("/v", "double"), mp("/v", "integer")}), "mappings[1].endpoint", "ambiguous with mappings[0]"},
		{"param vs literal", with(ds, "mappings", []any{mp("/a/%{x}", "double"), mp("/a/b", "integer")}), "mappings[1].endpoint", "ambiguous"},
		{"params renamed", with(ds, "mappings", []any{mp("/%{x}/v", "double"), mp("/%{y}/v", "integer")}), "mappings[1].endpoint", "ambiguous"},
		{"crossed params", with(ds, "mappings", []any{mp("/%{x}/b", "double"), mp("/a/%{y}", "integer")}), "mappings[1].endpoint", "ambiguous"},
		{"object one level", base("datastream", "device", "object", mp("/v", "double")), "mappings[0].endpoint", "at least two levels"},
		{"object param last", base("datastream", "device", "object", mp("/a/%{x}", "double")), "mappings[0].endpoint", "cannot be a parameter"},
		{"object different base", base("datastream", "device", "object", mp("/a/x", "double"), mp("/b/y", "double")), "mappings[1].endpoint", "must share the base"},
		{"object different depth", base("datastream", "device", "object", mp("/a/x", "double"), mp("/a/b/y", "double")), "mappings[1].endpoint", "must share the base"},
		{"object different reliability", base("datastream", "device", "object", mp("/a/x", "double"), mp("/a/y", "double", "reliability", "unique")), "mappings[1].reliability", "same reliability"},
		{"object different retention", base("datastream", "device", "object", mp("/a/x", "double"), mp("/a/y", "double", "retention", "stored")), "mappings[1].retention", "same retention"},
		{"object different expiry", base("datastream", "device", "object", mp("/a/x", "double"), mp("/a/y", "double", "expiry", 5)), "mappings[1].expiry", "same expiry"},
		{"object different explicit ts", base("datastream", "device", "object", mp("/a/x", "double"), mp("/a/y", "double", "explicit_timestamp", true)), "mappings[1].explicit_timestamp", "same explicit_timestamp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var doc []byte
			if s, ok := tc.doc.(string); ok {
				doc = []byte(s)
			} else {
				var err error
				if doc, err = json.Marshal(tc.doc); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Parse(doc)
			if err == nil {
				t.Fatalf("Parse accepted %s", doc)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T) is not an *Error matching ErrInvalid", err, err)
			}
			if e.Field != tc.field {
				t.Fatalf("field = %q, want %q (error %v)", e.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if tc.field != "" && tc.field != "interface_name" && !strings.Contains(err.Error(), `"com.example.Test"`) {
				t.Fatalf("error %q does not name the interface", err)
			}
		})
	}
}

func TestParseAcceptsDefaultValuedDatastreamFieldsOnProperties(t *testing.T) {
	t.Parallel()
	doc := `{"interface_name":"com.example.P","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/a","type":"string","reliability":"unique","retention":"discard","expiry":0,
	  "explicit_timestamp":false,"database_retention_policy":"no_ttl","allow_unset":true}]}`
	if _, err := Parse([]byte(doc)); err != nil {
		t.Fatal(err)
	}
}

func TestParseMaxMappings(t *testing.T) {
	t.Parallel()
	many := make([]any, MaxMappings)
	for k := range many {
		many[k] = mp(fmt.Sprintf("/m%d", k), "double")
	}
	d, _ := json.Marshal(with(base("datastream", "device", "", mp("/v", "double")), "mappings", many))
	i, err := Parse(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(i.Mappings) != MaxMappings {
		t.Fatalf("mappings = %d", len(i.Mappings))
	}
	m, err := i.Lookup("/m1023")
	if err != nil || m.Endpoint != "/m1023" {
		t.Fatalf("lookup = %v %v", m, err)
	}
}

func TestParseFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "x.json")
	if err := os.WriteFile(p, []byte(serverProps), 0o600); err != nil {
		t.Fatal(err)
	}
	i, err := ParseFile(p)
	if err != nil || i.Name != "org.astarte-platform.genericsensors.SamplingRate" {
		t.Fatalf("ParseFile = %v %v", i, err)
	}
	if string(i.Source()) != strings.TrimSpace(serverProps) {
		t.Fatal("Source differs from the file")
	}
	if _, err := ParseFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("missing file accepted")
	}
}
