package payload

import (
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
)

func FuzzDecode(f *testing.F) {
	for k, c := range canonical {
		data, _ := Encode(c.value, &t0)
		f.Add(uint8(k), data)
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte{5, 0, 0, 0, 0})
	types := interfaces.MappingTypes()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		typ := types[int(which)%len(types)]
		m, err := Decode(typ, data)
		if err != nil || m.Unset {
			return
		}
		// Whatever decodes is canonical and re-encodes to an equal value.
		again, err := Encode(m.Value, m.Timestamp)
		if err != nil {
			t.Fatalf("decoded %s value %#v does not re-encode: %v", typ, m.Value, err)
		}
		m2, err := Decode(typ, again)
		if err != nil || !reflect.DeepEqual(m2.Value, m.Value) {
			t.Fatalf("re-decode of %s: %#v %v, want %#v", typ, m2.Value, err, m.Value)
		}
	})
}

func FuzzDecodeObject(f *testing.F) {
	mappings := map[string]*interfaces.Mapping{
		"lat":  {Type: interfaces.Double},
		"n":    {Type: interfaces.Integer},
		"tags": {Type: interfaces.StringArray},
	}
	seed, _ := EncodeObject(map[string]any{"lat": 1.5, "n": int32(3), "tags": []string{"a"}}, &t0)
	f.Add(seed)
	bad, _ := bson.Marshal(bson.D{{Key: "v", Value: bson.D{{Key: "zz", Value: 1}}}})
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		fields, ts, err := DecodeObject(mappings, data)
		if err != nil {
			return
		}
		again, err := EncodeObject(fields, ts)
		if err != nil {
			t.Fatalf("decoded object does not re-encode: %v", err)
		}
		back, _, err := DecodeObject(mappings, again)
		if err != nil || !reflect.DeepEqual(back, fields) {
			t.Fatalf("object re-decode: %v %v", back, err)
		}
	})
}

func FuzzDecodePropertyList(f *testing.F) {
	seed, _ := EncodePropertyList([]PropertyPath{{"a.B", "/c"}, {"d.E", "/f/g"}})
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := DecodePropertyList(data)
		if err != nil {
			return
		}
		for _, p := range paths {
			if p.Interface == "" || len(p.Path) < 2 || p.Path[0] != '/' {
				t.Fatalf("bad entry accepted: %+v", p)
			}
		}
	})
}
