package msghubemu

import (
	"encoding/json"
	"fmt"
	"strings"
)

// iface is what the hub needs of an interface: enough to route and check
// data, as the hub's SDK would (no full validation: that is the device's
// job).
type iface struct {
	Name        string    `json:"interface_name"`
	Major       int       `json:"version_major"`
	Minor       int       `json:"version_minor"`
	Type        string    `json:"type"`
	Ownership   string    `json:"ownership"`
	Aggregation string    `json:"aggregation"`
	Mappings    []mapping `json:"mappings"`
	source      string
}

type mapping struct {
	Endpoint   string `json:"endpoint"`
	Type       string `json:"type"`
	AllowUnset bool   `json:"allow_unset"`
	segments   []string
}

var astarteTypes = map[string]bool{
	"double": true, "integer": true, "boolean": true, "longinteger": true, "string": true, "binaryblob": true, "datetime": true,
	"doublearray": true, "integerarray": true, "booleanarray": true, "longintegerarray": true, "stringarray": true,
	"binaryblobarray": true, "datetimearray": true,
}

// parseInterface is the hub's minimal check of an interface document.
func parseInterface(doc string) (*iface, error) {
	var i iface
	if err := json.Unmarshal([]byte(doc), &i); err != nil {
		return nil, fmt.Errorf("interface is not valid JSON: %w", err)
	}
	switch {
	case i.Name == "":
		return nil, fmt.Errorf("interface has no interface_name")
	case i.Major < 0 || i.Minor < 0 || i.Major == 0 && i.Minor == 0:
		return nil, fmt.Errorf("interface %s: invalid version %d.%d", i.Name, i.Major, i.Minor)
	case i.Type != "datastream" && i.Type != "properties":
		return nil, fmt.Errorf("interface %s: type %q is neither datastream nor properties", i.Name, i.Type)
	case i.Ownership != "device" && i.Ownership != "server":
		return nil, fmt.Errorf("interface %s: ownership %q is neither device nor server", i.Name, i.Ownership)
	case len(i.Mappings) == 0:
		return nil, fmt.Errorf("interface %s has no mappings", i.Name)
	}
	if i.Aggregation == "" {
		i.Aggregation = "individual"
	}
	if i.Aggregation != "individual" && i.Aggregation != "object" {
		return nil, fmt.Errorf("interface %s: aggregation %q is neither individual nor object", i.Name, i.Aggregation)
	}
	for k := range i.Mappings {
		m := &i.Mappings[k]
		if !strings.HasPrefix(m.Endpoint, "/") || !astarteTypes[m.Type] {
			return nil, fmt.Errorf("interface %s: mapping %q of type %q is invalid", i.Name, m.Endpoint, m.Type)
		}
		m.segments = strings.Split(m.Endpoint[1:], "/")
	}
	i.source = doc
	return &i, nil
}

func (i *iface) version() string { return fmt.Sprintf("%s:%d:%d", i.Name, i.Major, i.Minor) }

func (i *iface) properties() bool { return i.Type == "properties" }

func (i *iface) object() bool { return i.Aggregation == "object" }

// lookup finds the mapping of a concrete path.
func (i *iface) lookup(path string) (*mapping, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q of interface %s does not start with /", path, i.Name)
	}
	segs := strings.Split(path[1:], "/")
	for k := range i.Mappings {
		if match(i.Mappings[k].segments, segs) {
			return &i.Mappings[k], nil
		}
	}
	return nil, fmt.Errorf("no mapping of interface %s matches path %q", i.Name, path)
}

func match(pattern, segs []string) bool {
	if len(pattern) != len(segs) {
		return false
	}
	for k, p := range pattern {
		if segs[k] == "" {
			return false
		}
		if strings.HasPrefix(p, "%{") && strings.HasSuffix(p, "}") {
			continue
		}
		if p != segs[k] {
			return false
		}
	}
	return true
}
