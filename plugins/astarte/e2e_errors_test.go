package main_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// baseIface is a valid interface that the invalid cases change one rule at
// a time.
const baseIface = `{"interface_name":"com.example.e2e.Base","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/%{s}/v","type":"double","reliability":"guaranteed","retention":"stored","expiry":10,
               "explicit_timestamp":true,"database_retention_policy":"use_ttl","database_retention_ttl":120}]}`

// mappingsOf returns n valid mappings with distinct endpoints.
func mappingsOf(n int) []any {
	out := make([]any, n)
	for k := range out {
		out[k] = map[string]any{"endpoint": "/m" + strings.Repeat("x", k%7) + "/v" + strings.Repeat("0", k/7), "type": "double"}
	}
	return out
}

// Every invalid interface rule of the Astarte interface format, through
// add_interface on the host: 400 astarte.bad_request whose message names the
// field and the broken rule.
func TestHostInvalidInterfacesAreBadRequests(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const id = "AAAAAAAAAAAAAAAAAAAAAA"
	mapping := func(iface map[string]any) map[string]any { return iface["mappings"].([]any)[0].(map[string]any) }
	asProps := func(i map[string]any) {
		i["type"] = "properties"
		m := mapping(i)
		for _, k := range []string{"reliability", "retention", "expiry", "explicit_timestamp", "database_retention_policy", "database_retention_ttl"} {
			delete(m, k)
		}
	}
	deep := "/" + strings.TrimSuffix(strings.Repeat("l/", 65), "/")
	cases := []struct {
		name   string
		change func(map[string]any)
		want   []string // substrings of the message
	}{
		{"name missing", func(i map[string]any) { delete(i, "interface_name") }, []string{"interface_name", "is required"}},
		{"name not a string", func(i map[string]any) { i["interface_name"] = 7 }, []string{"interface_name", "must be a string"}},
		{"name too long", func(i map[string]any) { i["interface_name"] = "com." + strings.Repeat("a", 125) }, []string{"interface_name", "longer than 128"}},
		{"name not reverse-domain", func(i map[string]any) { i["interface_name"] = "Sensor" }, []string{"interface_name", "reverse-domain"}},
		{"name with empty label", func(i map[string]any) { i["interface_name"] = "com..example.X" }, []string{"interface_name", "reverse-domain"}},
		{"name with a dash in the last label", func(i map[string]any) { i["interface_name"] = "com.example.My-Sensor" }, []string{"interface_name", "reverse-domain"}},
		{"versions both 0", func(i map[string]any) { i["version_major"], i["version_minor"] = 0, 0 }, []string{"version_major", "must not both be 0"}},
		{"negative minor", func(i map[string]any) { i["version_minor"] = -1 }, []string{"version_minor", "must not be negative"}},
		{"major missing", func(i map[string]any) { delete(i, "version_major") }, []string{"version_major", "is required"}},
		{"major not an integer", func(i map[string]any) { i["version_major"] = 1.5 }, []string{"version_major", "must be an integer"}},
		{"major as text", func(i map[string]any) { i["version_major"] = "1" }, []string{"version_major", "must be an integer"}},
		{"type unknown", func(i map[string]any) { i["type"] = "stream" }, []string{"field type", `"stream" is not one of`}},
		{"ownership unknown", func(i map[string]any) { i["ownership"] = "cloud" }, []string{"ownership", `"cloud"`}},
		{"aggregation unknown", func(i map[string]any) { i["aggregation"] = "bulk" }, []string{"aggregation", `"bulk"`}},
		{"object properties", func(i map[string]any) { asProps(i); i["aggregation"] = "object" }, []string{"aggregation", "cannot be object-aggregated"}},
		{"mappings missing", func(i map[string]any) { delete(i, "mappings") }, []string{"mappings", "is required"}},
		{"mappings not an array", func(i map[string]any) { i["mappings"] = map[string]any{} }, []string{"mappings", "must be an array"}},
		{"mappings empty", func(i map[string]any) { i["mappings"] = []any{} }, []string{"mappings", "at least 1"}},
		{"1025 mappings", func(i map[string]any) { i["mappings"] = mappingsOf(1025) }, []string{"mappings", "at most 1024"}},
		{"mapping not an object", func(i map[string]any) { i["mappings"] = []any{"x"} }, []string{"mappings[0]", "must be a JSON object"}},
		{"endpoint missing", func(i map[string]any) { delete(mapping(i), "endpoint") }, []string{"mappings[0].endpoint", "is required"}},
		{"endpoint without slash", func(i map[string]any) { mapping(i)["endpoint"] = "a/%{s}" }, []string{"mappings[0].endpoint", `must start with "/"`}},
		{"endpoint empty level", func(i map[string]any) { mapping(i)["endpoint"] = "/a//v" }, []string{"mappings[0].endpoint", "empty level"}},
		{"endpoint bad parameter", func(i map[string]any) { mapping(i)["endpoint"] = "/%{1s}/v" }, []string{"mappings[0].endpoint", "parameter", "1s"}},
		{"endpoint parameter twice", func(i map[string]any) { mapping(i)["endpoint"] = "/%{s}/%{s}" }, []string{"mappings[0].endpoint", "appears twice"}},
		{"endpoint bad level", func(i map[string]any) { mapping(i)["endpoint"] = "/a-b/v" }, []string{"mappings[0].endpoint", `"a-b"`}},
		{"endpoint too deep", func(i map[string]any) { mapping(i)["endpoint"] = deep }, []string{"mappings[0].endpoint", "more than 64 levels"}},
		{"mapping type unknown", func(i map[string]any) { mapping(i)["type"] = "float" }, []string{"mappings[0].type", `"float" is not an Astarte type`}},
		{"mapping type missing", func(i map[string]any) { delete(mapping(i), "type") }, []string{"mappings[0].type", "is required"}},
		{"reliability unknown", func(i map[string]any) { mapping(i)["reliability"] = "sometimes" }, []string{"mappings[0].reliability", `"sometimes"`}},
		{"reliability on properties", func(i map[string]any) { asProps(i); mapping(i)["reliability"] = "guaranteed" }, []string{"mappings[0].reliability", "only allowed on datastream"}},
		{"retention unknown", func(i map[string]any) { mapping(i)["retention"] = "forever" }, []string{"mappings[0].retention", `"forever"`}},
		{"retention on properties", func(i map[string]any) { asProps(i); mapping(i)["retention"] = "stored" }, []string{"mappings[0].retention", "only allowed on datastream"}},
		{"expiry on properties", func(i map[string]any) { asProps(i); mapping(i)["expiry"] = 5 }, []string{"mappings[0].expiry", "only allowed on datastream"}},
		{"expiry too large", func(i map[string]any) { mapping(i)["expiry"] = int64(1) << 31 }, []string{"mappings[0].expiry", "2147483647"}},
		{"expiry negative", func(i map[string]any) { mapping(i)["expiry"] = -1 }, []string{"mappings[0].expiry", "must not be negative"}},
		{"explicit_timestamp on properties", func(i map[string]any) { asProps(i); mapping(i)["explicit_timestamp"] = true }, []string{"mappings[0].explicit_timestamp", "only allowed on datastream"}},
		{"explicit_timestamp not a boolean", func(i map[string]any) { mapping(i)["explicit_timestamp"] = "yes" }, []string{"mappings[0].explicit_timestamp", "true or false"}},
		{"allow_unset on datastream", func(i map[string]any) { mapping(i)["allow_unset"] = true }, []string{"mappings[0].allow_unset", "only allowed on properties"}},
		{"database_retention_policy unknown", func(i map[string]any) { mapping(i)["database_retention_policy"] = "sometimes" }, []string{"mappings[0].database_retention_policy", `"sometimes"`}},
		{"database_retention_policy on properties", func(i map[string]any) { asProps(i); mapping(i)["database_retention_policy"] = "use_ttl" }, []string{"mappings[0].database_retention_policy", "only allowed on datastream"}},
		{"use_ttl without ttl", func(i map[string]any) { delete(mapping(i), "database_retention_ttl") }, []string{"mappings[0].database_retention_ttl", "required when"}},
		{"ttl without use_ttl", func(i map[string]any) { mapping(i)["database_retention_policy"] = "no_ttl" }, []string{"mappings[0].database_retention_ttl", "only allowed when"}},
		{"ttl too small", func(i map[string]any) { mapping(i)["database_retention_ttl"] = 59 }, []string{"mappings[0].database_retention_ttl", "between 60"}},
		{"ambiguous endpoints", func(i map[string]any) {
			i["mappings"] = append(i["mappings"].([]any), map[string]any{"endpoint": "/x/v", "type": "integer"})
		}, []string{"mappings[1].endpoint", "ambiguous with mappings[0]"}},
		{"duplicate endpoints", func(i map[string]any) {
			i["mappings"] = append(i["mappings"].([]any), map[string]any{"endpoint": "/%{s}/v", "type": "integer"})
		}, []string{"mappings[1].endpoint", "ambiguous"}},
		{"object with a one-level endpoint", func(i map[string]any) {
			i["aggregation"] = "object"
			i["mappings"] = []any{map[string]any{"endpoint": "/v", "type": "double"}}
		}, []string{"mappings[0].endpoint", "at least two levels"}},
		{"object with a parameter last", func(i map[string]any) {
			i["aggregation"] = "object"
			i["mappings"] = []any{map[string]any{"endpoint": "/a/%{p}", "type": "double"}}
		}, []string{"mappings[0].endpoint", "last level", "cannot be a parameter"}},
		{"object with two bases", func(i map[string]any) {
			i["aggregation"] = "object"
			i["mappings"] = []any{map[string]any{"endpoint": "/a/x", "type": "double"}, map[string]any{"endpoint": "/b/y", "type": "double"}}
		}, []string{"mappings[1].endpoint", "must share the base"}},
		{"object with mixed reliability", func(i map[string]any) {
			i["aggregation"] = "object"
			i["mappings"] = []any{map[string]any{"endpoint": "/a/x", "type": "double", "reliability": "unique"},
				map[string]any{"endpoint": "/a/y", "type": "double"}}
		}, []string{"mappings[1].reliability", "same reliability"}},
		{"object with mixed explicit_timestamp", func(i map[string]any) {
			i["aggregation"] = "object"
			i["mappings"] = []any{map[string]any{"endpoint": "/a/x", "type": "double", "explicit_timestamp": true},
				map[string]any{"endpoint": "/a/y", "type": "double"}}
		}, []string{"mappings[1].explicit_timestamp", "same explicit_timestamp"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			iface := object(t, baseIface)
			c.change(iface)
			want := c.want
			if name, ok := iface["interface_name"].(string); ok && name != "" {
				want = append(want, name) // the message names the interface too
			}
			s.t = t
			s.fail("add_interface", map[string]any{"device_id": id, "interface": iface}, http.StatusBadRequest, "bad_request", want...)
		})
	}
	s.t = t
	// The valid base is accepted, and nothing invalid was added.
	s.ok("add_interface", map[string]any{"device_id": id, "interface": object(t, baseIface)})
	if r := s.ok("list_interfaces", map[string]any{"device_id": id}); r["introspection"] != "com.example.e2e.Base:1:0" {
		t.Fatalf("introspection after the invalid definitions: %v", r["introspection"])
	}
	// Files: not JSON, not there, both forms at once, neither.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"interface_name":`), 0o600); err != nil {
		t.Fatal(err)
	}
	s.fail("add_interface", map[string]any{"device_id": id, "file": bad}, http.StatusBadRequest, "bad_request", "not a JSON object", bad)
	s.fail("add_interface", map[string]any{"device_id": id, "file": bad + ".missing"}, http.StatusBadRequest, "bad_request", "request.file")
	s.fail("add_interface", map[string]any{"device_id": id, "file": bad, "interface": object(t, baseIface)}, http.StatusBadRequest, "bad_request", "not both")
	s.fail("add_interface", map[string]any{"device_id": id}, http.StatusBadRequest, "bad_request", "interface")
}

// Every invalid path and value case, through the host: 400
// astarte.bad_request naming the interface, the path and the reason. The
// device is not connected: validation comes first.
func TestHostInvalidPayloadsAreBadRequests(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.pair()
	s.addInterfaces(id, allTypes, geo, devProps, srvProps, srvData)
	const ts = "2024-01-01T00:00:00Z"
	const all = "com.example.e2e.AllTypes"
	big := strings.Repeat("x", 65537)
	bigBlob := base64.StdEncoding.EncodeToString(make([]byte, 65537))
	items := func(n int, v any) []any {
		out := make([]any, n)
		for k := range out {
			out[k] = v
		}
		return out
	}
	type req = map[string]any
	cases := []struct {
		name, capability string
		req              req
		want             []string
	}{
		{"path matches no mapping", "send", req{"interface": all, "path": "/s1/nope", "value": 1, "timestamp": ts}, []string{`"/s1/nope"`, "no mapping matches"}},
		{"path too short", "send", req{"interface": all, "path": "/s1", "value": 1, "timestamp": ts}, []string{`"/s1"`, "no mapping matches"}},
		{"path without slash", "send", req{"interface": all, "path": "s1/double", "value": 1, "timestamp": ts}, []string{`"s1/double"`, `must start with "/"`}},
		{"parameter with +", "send", req{"interface": all, "path": "/s+1/double", "value": 1, "timestamp": ts}, []string{`"/s+1/double"`, `"+"`}},
		{"parameter with #", "send", req{"interface": all, "path": "/s#/double", "value": 1, "timestamp": ts}, []string{`"/s#/double"`, `"#"`}},
		{"empty parameter", "send", req{"interface": all, "path": "//double", "value": 1, "timestamp": ts}, []string{`"//double"`, "empty level"}},
		{"timestamp missing", "send", req{"interface": all, "path": "/s/double", "value": 1}, []string{`"/s/double"`, "timestamp is required"}},
		{"timestamp not allowed", "send", req{"interface": all, "path": "/s/q0", "value": 1, "timestamp": ts}, []string{`"/s/q0"`, "timestamp cannot be set"}},
		{"value missing", "send", req{"interface": all, "path": "/s/double", "timestamp": ts}, []string{"request.value", "is required"}},
		{"double as text", "send", req{"interface": all, "path": "/s/double", "value": "1.5", "timestamp": ts}, []string{`"/s/double"`, "type double wants a number"}},
		{"double infinite", "send", req{"interface": all, "path": "/s/double", "value": json.Number("1e400"), "timestamp": ts}, []string{`"/s/double"`, "double"}},
		{"double NaN as text", "send", req{"interface": all, "path": "/s/double", "value": "NaN", "timestamp": ts}, []string{`"/s/double"`, "type double"}},
		{"integer above int32", "send", req{"interface": all, "path": "/s/integer", "value": 2147483648, "timestamp": ts}, []string{`"/s/integer"`, "outside the 32-bit range"}},
		{"integer below int32", "send", req{"interface": all, "path": "/s/integer", "value": -2147483649, "timestamp": ts}, []string{`"/s/integer"`, "outside the 32-bit range"}},
		{"integer fraction", "send", req{"interface": all, "path": "/s/integer", "value": 1.5, "timestamp": ts}, []string{`"/s/integer"`, "whole number"}},
		{"boolean as text", "send", req{"interface": all, "path": "/s/boolean", "value": "true", "timestamp": ts}, []string{`"/s/boolean"`, "true or false"}},
		{"longinteger beyond int64", "send", req{"interface": all, "path": "/s/longinteger", "value": json.Number("9223372036854775808"), "timestamp": ts}, []string{`"/s/longinteger"`, "64-bit"}},
		{"longinteger text not a number", "send", req{"interface": all, "path": "/s/longinteger", "value": "12x", "timestamp": ts}, []string{`"/s/longinteger"`, "not a 64-bit integer"}},
		{"longinteger fraction", "send", req{"interface": all, "path": "/s/longinteger", "value": 2.5, "timestamp": ts}, []string{`"/s/longinteger"`, "whole number"}},
		{"string over 64 KiB", "send", req{"interface": all, "path": "/s/string", "value": big, "timestamp": ts}, []string{`"/s/string"`, "65537 bytes, more than 65536"}},
		{"string as number", "send", req{"interface": all, "path": "/s/string", "value": 5, "timestamp": ts}, []string{`"/s/string"`, "wants a string"}},
		{"blob not base64", "send", req{"interface": all, "path": "/s/binaryblob", "value": "!!not base64", "timestamp": ts}, []string{`"/s/binaryblob"`, "base64"}},
		{"blob over 64 KiB", "send", req{"interface": all, "path": "/s/binaryblob", "value": bigBlob, "timestamp": ts}, []string{`"/s/binaryblob"`, "more than 65536"}},
		{"datetime not RFC 3339", "send", req{"interface": all, "path": "/s/datetime", "value": "yesterday", "timestamp": ts}, []string{`"/s/datetime"`, "RFC 3339"}},
		{"array over 1024 items", "send", req{"interface": all, "path": "/s/integerarray", "value": items(1025, 1), "timestamp": ts}, []string{`"/s/integerarray"`, "1025 items, more than 1024"}},
		{"array item of the wrong type", "send", req{"interface": all, "path": "/s/integerarray", "value": []any{1, "x"}, "timestamp": ts}, []string{`"/s/integerarray"`, "item 1"}},
		{"array item null", "send", req{"interface": all, "path": "/s/stringarray", "value": []any{"a", nil}, "timestamp": ts}, []string{`"/s/stringarray"`, "item 1", "missing"}},
		{"array item over int32", "send", req{"interface": all, "path": "/s/integerarray", "value": []any{2147483648}, "timestamp": ts}, []string{`"/s/integerarray"`, "item 0", "32-bit"}},
		{"array item string over 64 KiB", "send", req{"interface": all, "path": "/s/stringarray", "value": []any{big}, "timestamp": ts}, []string{`"/s/stringarray"`, "item 0", "more than 65536"}},
		{"not an array", "send", req{"interface": all, "path": "/s/doublearray", "value": 1.5, "timestamp": ts}, []string{`"/s/doublearray"`, "wants an array"}},
		{"send on properties", "send", req{"interface": "com.example.e2e.DevProps", "path": "/a/name", "value": "x"}, []string{"com.example.e2e.DevProps", "use set_property"}},
		{"send on server-owned", "send", req{"interface": "com.example.e2e.SrvData", "path": "/ping", "value": 1}, []string{"com.example.e2e.SrvData", "server-owned"}},
		{"send on an object interface", "send", req{"interface": "com.example.e2e.Geo", "path": "/g/lat", "value": 1, "timestamp": ts}, []string{"com.example.e2e.Geo", "send_aggregate"}},
		{"send_aggregate on individual", "send_aggregate", req{"interface": all, "path": "/s", "value": map[string]any{"double": 1}, "timestamp": ts}, []string{all, "individual"}},
		{"send_aggregate of a non-object", "send_aggregate", req{"interface": "com.example.e2e.Geo", "path": "/g", "value": 1, "timestamp": ts}, []string{"request.value", "wants an object"}},
		{"object empty", "send_aggregate", req{"interface": "com.example.e2e.Geo", "path": "/g", "value": map[string]any{}, "timestamp": ts}, []string{"com.example.e2e.Geo", `"/g"`, "no values"}},
		{"object unknown key", "send_aggregate", req{"interface": "com.example.e2e.Geo", "path": "/g", "value": map[string]any{"alt": 1}, "timestamp": ts}, []string{"com.example.e2e.Geo", `"alt"`}},
		{"object value of the wrong type", "send_aggregate", req{"interface": "com.example.e2e.Geo", "path": "/g", "value": map[string]any{"lat": "north"}, "timestamp": ts}, []string{"com.example.e2e.Geo", "/g/lat", "type double"}},
		{"object base path wrong", "send_aggregate", req{"interface": "com.example.e2e.Geo", "path": "/g/lat", "value": map[string]any{"lat": 1}, "timestamp": ts}, []string{"com.example.e2e.Geo", `"/g/lat"`}},
		{"object timestamp missing", "send_aggregate", req{"interface": "com.example.e2e.Geo", "path": "/g", "value": map[string]any{"lat": 1}}, []string{"com.example.e2e.Geo", "timestamp is required"}},
		{"property of the wrong type", "set_property", req{"interface": "com.example.e2e.DevProps", "path": "/a/name", "value": 5}, []string{"com.example.e2e.DevProps", `"/a/name"`, "wants a string"}},
		{"property over int32", "set_property", req{"interface": "com.example.e2e.DevProps", "path": "/a/level", "value": 2147483648}, []string{"com.example.e2e.DevProps", `"/a/level"`, "32-bit"}},
		{"property null", "set_property", req{"interface": "com.example.e2e.DevProps", "path": "/a/name", "value": nil}, []string{"com.example.e2e.DevProps", `"/a/name"`, "missing"}},
		{"property path matches no mapping", "set_property", req{"interface": "com.example.e2e.DevProps", "path": "/a/other", "value": "x"}, []string{"com.example.e2e.DevProps", `"/a/other"`, "no mapping matches"}},
		{"set_property on a datastream", "set_property", req{"interface": all, "path": "/s/double", "value": 1}, []string{all, "use send"}},
		{"set_property on server-owned", "set_property", req{"interface": "com.example.e2e.SrvProps", "path": "/a/rate", "value": 1}, []string{"com.example.e2e.SrvProps", "server-owned"}},
		{"unset without allow_unset", "unset_property", req{"interface": "com.example.e2e.DevProps", "path": "/a/level"}, []string{"com.example.e2e.DevProps", `"/a/level"`, "allow_unset"}},
		{"get_property on a datastream", "get_property", req{"interface": all, "path": "/s/double"}, []string{all, "no stored values"}},
		{"device id malformed", "send", req{"device_id": "short", "interface": all, "path": "/s/double", "value": 1, "timestamp": ts}, []string{"device_id"}},
		{"unknown request field", "send", req{"interface": all, "path": "/s/double", "value": 1, "timestamp": ts, "qos": 2}, []string{"qos", "not a known field"}},
		{"timestamp not a date", "send", req{"interface": all, "path": "/s/double", "value": 1, "timestamp": "noon"}, []string{"timestamp"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := req{"device_id": id}
			for k, v := range c.req {
				r[k] = v
			}
			s.t = t
			s.fail(c.capability, r, http.StatusBadRequest, "bad_request", c.want...)
		})
	}
	s.t = t
	// Not in the introspection: not_found (404), naming the interface.
	s.fail("send", req{"device_id": id, "interface": "com.example.Nope", "path": "/x", "value": 1}, http.StatusNotFound, "not_found", "com.example.Nope", "not in the device introspection")
	// The limits themselves are accepted and delivered.
	s.connect(id)
	for _, c := range []req{
		{"path": "/s/string", "value": strings.Repeat("x", 65536)},
		{"path": "/s/binaryblob", "value": base64.StdEncoding.EncodeToString(make([]byte, 65536))},
		{"path": "/s/integerarray", "value": items(1024, -2147483648)},
		{"path": "/s/longinteger", "value": json.Number("-9223372036854775808")},
	} {
		c["device_id"], c["interface"], c["timestamp"] = id, all, ts
		if d := s.ok("send", c); d["delivery"] != "delivered" {
			t.Fatalf("send at the limit %v: %v", c["path"], d)
		}
	}
	// A discard-retention message while disconnected is refused as a
	// retryable service error, not queued.
	if st := s.ok("disconnect", req{"device_id": id}); st["state"] != "disconnected" {
		t.Fatalf("disconnect: %v", st)
	}
	s.fail("send", req{"device_id": id, "interface": all, "path": "/s/q0", "value": 1}, http.StatusServiceUnavailable, "service_error", "discard")
}
