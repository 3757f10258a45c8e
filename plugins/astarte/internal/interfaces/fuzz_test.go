package interfaces

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{sensorValues, geoObject, serverProps, "{}", "[]", "null", `{"interface_name":"a.B"}`,
		`{"interface_name":"a.B","version_major":1,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
		  "mappings":[{"endpoint":"/%{a}/b","type":"integerarray"},{"endpoint":"/%{a}/c","type":"datetime"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		i, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not *Error: %T %v", err, err)
			}
			return
		}
		// A parsed interface satisfies the invariants the rest relies on.
		if len(i.Name) > MaxNameLength || len(i.Mappings) < 1 || len(i.Mappings) > MaxMappings {
			t.Fatalf("invariants broken: %+v", i)
		}
		if i.Type == Properties && i.Aggregation == Object {
			t.Fatal("object properties accepted")
		}
		for _, m := range i.Mappings {
			if !m.Type.Valid() {
				t.Fatalf("invalid type accepted: %s", m.Type)
			}
			// The endpoint resolves to itself once parameters are filled in.
			concrete := strings.NewReplacer("%{", "p", "}", "").Replace(m.Endpoint)
			got, err := i.MappingFor(concrete)
			if err != nil {
				t.Fatalf("MappingFor(%q) for %q: %v", concrete, m.Endpoint, err)
			}
			if got != m {
				t.Fatalf("MappingFor(%q) = %q, want %q", concrete, got.Endpoint, m.Endpoint)
			}
		}
	})
}

func FuzzLookup(f *testing.F) {
	i := mustParse(f, serverProps)
	o := mustParse(f, geoObject)
	for _, s := range []string{"/a/enable", "/global/name", "//", "/a/+", "/x/y/z", "/gps"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if m, err := i.Lookup(path); err == nil {
			if strings.ContainsAny(path, "+#\x00") || strings.Contains(path, "//") {
				t.Fatalf("Lookup(%q) accepted an invalid path as %s", path, m.Endpoint)
			}
		}
		_, _ = o.LookupObject(path)
		_, _ = o.MappingFor(path)
	})
}
