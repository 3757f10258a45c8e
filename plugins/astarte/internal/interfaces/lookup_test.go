package interfaces

import (
	"errors"
	"strings"
	"testing"
)

func mustParse(t testing.TB, doc string) *Interface {
	t.Helper()
	i, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestLookup(t *testing.T) {
	t.Parallel()
	i := mustParse(t, serverProps)
	cases := []struct {
		path     string
		endpoint string
		err      string
		notFound bool
	}{
		{"/s1/enable", "/%{sensor_id}/enable", "", false},
		{"/s-1.x/samplingPeriod", "/%{sensor_id}/samplingPeriod", "", false},
		{"/global/name", "/global/name", "", false},
		{"/global/enable", "/%{sensor_id}/enable", "", false},
		{"", "", "must start with", false},
		{"s1/enable", "", "must start with", false},
		{"//enable", "", "empty level", false},
		{"/s1/enable/", "", "empty level", false},
		{"/s+/enable", "", "must not contain", false},
		{"/s#/enable", "", "must not contain", false},
		{"/s\x00/enable", "", "must not contain", false},
		{"/\xff/enable", "", "UTF-8", false},
		{"/s1/other", "", "no mapping matches", false},
		{"/s1", "", "no mapping matches", false},
		{"/global/name/x", "", "no mapping matches", false},
	}
	for _, tc := range cases {
		m, err := i.Lookup(tc.path)
		if tc.err == "" {
			if err != nil || m.Endpoint != tc.endpoint {
				t.Errorf("Lookup(%q) = %v, %v; want %s", tc.path, m, err, tc.endpoint)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Lookup(%q) error = %v, want %q", tc.path, err, tc.err)
			continue
		}
		if errors.Is(err, ErrNotFound) != tc.notFound || errors.Is(err, ErrInvalid) == tc.notFound {
			t.Errorf("Lookup(%q) error kind wrong: %v", tc.path, err)
		}
		if !strings.Contains(err.Error(), i.Name) || (tc.path != "" && !strings.Contains(err.Error(), "path")) {
			t.Errorf("Lookup(%q) error %q does not name interface and path", tc.path, err)
		}
	}
}

func TestLookupObject(t *testing.T) {
	t.Parallel()
	o := mustParse(t, geoObject)
	keys, err := o.LookupObject("/gps1")
	if err != nil || len(keys) != 3 {
		t.Fatalf("LookupObject = %v %v", keys, err)
	}
	for _, bad := range []string{"/gps1/latitude", "/", "/a/b", "/+"} {
		if _, err := o.LookupObject(bad); err == nil {
			t.Errorf("LookupObject(%q) accepted", bad)
		}
	}
	if _, err := o.Lookup("/gps1/latitude"); err == nil || !strings.Contains(err.Error(), "object-aggregated") {
		t.Fatalf("Lookup on object = %v", err)
	}
	m, err := o.MappingFor("/gps1/longitude")
	if err != nil || m.Endpoint != "/%{id}/longitude" {
		t.Fatalf("MappingFor = %v %v", m, err)
	}
	if _, err := o.MappingFor("/gps1/altitude"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("MappingFor unknown key = %v", err)
	}
	ind := mustParse(t, serverProps)
	if _, err := ind.LookupObject("/x"); err == nil {
		t.Fatal("LookupObject on individual accepted")
	}
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	var in Introspection
	if in.String() != "" || in.Len() != 0 {
		t.Fatal("empty introspection not empty")
	}
	in.Add(mustParse(t, serverProps))
	in.Add(mustParse(t, sensorValues))
	in.Add(mustParse(t, geoObject))
	want := "org.astarte-platform.genericsensors.Geolocation:0:1;" +
		"org.astarte-platform.genericsensors.SamplingRate:1:0;" +
		"org.astarte-platform.genericsensors.Values:1:2"
	if in.String() != want {
		t.Fatalf("introspection = %q", in.String())
	}
	if so := in.ServerOwned(); len(so) != 1 || so[0].Name != "org.astarte-platform.genericsensors.SamplingRate" {
		t.Fatalf("server owned = %v", so)
	}
	clone := in.Clone()
	v2 := strings.Replace(sensorValues, `"version_major": 1`, `"version_major": 2`, 1)
	if old := in.Add(mustParse(t, v2)); old == nil || old.Major != 1 {
		t.Fatal("Add did not report the replaced version")
	}
	if !strings.Contains(in.String(), "Values:2:2") || !strings.Contains(clone.String(), "Values:1:2") {
		t.Fatal("replace or clone broken")
	}
	if _, _, err := in.Lookup("org.astarte-platform.genericsensors.Values", "/s/value"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := in.Lookup("com.example.Missing", "/x"); !errors.Is(err, ErrNotFound) ||
		!strings.Contains(err.Error(), "com.example.Missing") {
		t.Fatalf("missing interface error = %v", err)
	}
	if in.Remove("org.astarte-platform.genericsensors.Values") == nil || in.Len() != 2 {
		t.Fatal("Remove failed")
	}
	if in.Remove("nope.X") != nil {
		t.Fatal("Remove of absent returned an interface")
	}
}

func TestMappingTypes(t *testing.T) {
	t.Parallel()
	all := MappingTypes()
	if len(all) != 14 {
		t.Fatalf("%d types", len(all))
	}
	arrays := 0
	for _, ty := range all {
		if !ty.Valid() {
			t.Fatalf("%s not valid", ty)
		}
		if ty.IsArray() {
			arrays++
			if ty.Element().IsArray() || string(ty.Element())+"array" != string(ty) {
				t.Fatalf("element of %s = %s", ty, ty.Element())
			}
		} else if ty.Element() != ty {
			t.Fatalf("element of scalar %s = %s", ty, ty.Element())
		}
	}
	if arrays != 7 || MappingType("float").Valid() {
		t.Fatal("array count or validity wrong")
	}
}
