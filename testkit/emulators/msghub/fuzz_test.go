package msghubemu

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzParsers feeds arbitrary input to the hub's parsers: interface
// documents and AstarteMessages of both versions. They must not panic, and
// a message that decodes must encode back to one that decodes the same.
func FuzzParsers(f *testing.F) {
	f.Add([]byte(devData))
	f.Add([]byte(devObject))
	f.Add([]byte(`{"interface_name":"x","version_major":1,"type":"properties","ownership":"server","mappings":[{"endpoint":"/%{a}/b","type":"integer"}]}`))
	for _, p := range protocols {
		w, _ := wireFor(p)
		for _, d := range []Data{
			{Interface: "i", Path: "/p", Kind: KindIndividual, Value: []string{"a"}},
			{Interface: "i", Path: "/p", Kind: KindObject, Object: map[string]any{"k": 1.5}},
			{Interface: "i", Path: "/p", Kind: KindUnset},
		} {
			m, err := w.encode(d)
			if err != nil {
				f.Fatal(err)
			}
			b, _ := proto.Marshal(m.Interface())
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if i, err := parseInterface(string(b)); err == nil {
			for _, m := range i.Mappings {
				_, _ = i.lookup(m.Endpoint)
			}
		}
		for _, p := range protocols {
			w, _ := wireFor(p)
			m := w.new("AstarteMessage")
			if err := (safeCodec{}).unmarshal(b, m.Interface()); err != nil {
				continue
			}
			d, err := w.decode(m)
			if err != nil {
				continue
			}
			re, err := w.encode(d)
			if err != nil {
				t.Fatalf("%s: re-encode %+v: %v", p, d, err)
			}
			if _, err := w.decode(re); err != nil {
				t.Fatalf("%s: decode of the re-encoded message: %v", p, err)
			}
		}
	})
}
