package sdk

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

type quickMessage struct {
	Interface string                     `json:"interface" jsonschema:"minLength=1"`
	Path      string                     `json:"path" jsonschema:"minLength=1,description=a path"`
	Value     *json.RawMessage           `json:"value,omitempty"`
	Values    map[string]json.RawMessage `json:"values,omitempty"`
	Timestamp *time.Time                 `json:"timestamp,omitempty"`
}

type quickBatch struct {
	DeviceID string         `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Messages []quickMessage `json:"messages" jsonschema:"minItems=1,maxItems=3"`
	Limit    int            `json:"limit,omitempty" jsonschema:"minimum=1,maximum=20"`
	Ratio    float64        `json:"ratio,omitempty"`
	Mode     string         `json:"mode,omitempty" jsonschema:"enum=a,enum=b"`
	Flag     bool           `json:"flag,omitempty"`
	Tags     []string       `json:"tags,omitempty" jsonschema:"maxLength=3"`
}

func quickSchema(t testing.TB) *schema {
	s, err := schemaFor("quick", reflect.TypeFor[quickBatch]())
	if err != nil {
		t.Fatal(err)
	}
	if s.quick == nil {
		t.Fatal("no quick check for a reflected request schema")
	}
	return s
}

// The quick check never accepts what the validator refuses, accepts the
// common valid documents, and validateLazy answers every document as
// validate does.
func TestQuickCheck(t *testing.T) {
	t.Parallel()
	s := quickSchema(t)
	const id = `"abcdefghijABCDEFGHIJ_-"`
	valid := []string{
		`{"device_id":` + id + `,"messages":[{"interface":"a.b","path":"/x","value":1}]}`,
		` { "device_id" : ` + id + ` , "messages" : [ { "interface" : "a" , "path" : "/x" , "value" : {"a":[1,"x",null]} } , {"interface":"é","path":"/y","values":{"k":true}} ] } `,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"2024-01-02T03:04:05.678Z"}],"limit":20,"ratio":-1.5e3,"mode":"b","flag":false,"tags":["abc","d"]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","value":"with \"escapes\""}]}`,
	}
	for _, doc := range valid {
		c := quickCursor{b: []byte(doc)}
		if !json.Valid([]byte(doc)) || !c.value(s.quick) || !c.end() {
			t.Errorf("quick check refused %s", doc)
		}
	}
	docs := append([]string{}, valid...)
	docs = append(docs, []string{
		``, `null`, `[]`, `{}`, `{"device_id":` + id + `}`, `{"device_id":` + id + `,"messages":[]}`,
		`{"device_id":"short","messages":[{"interface":"a","path":"/x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"","path":"/x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","val":1}]}`,
		`{"device_id":` + id + `,"messages":[{"Interface":"a","path":"/x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":1,"path":"/x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"},{"interface":"a","path":"/x"},{"interface":"a","path":"/x"},{"interface":"a","path":"/x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"2024-13-02T03:04:05Z"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"2024-01-02 03:04:05Z"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"2016-12-31T23:59:60Z"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","values":[]}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"limit":0}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"limit":21}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"limit":1.0}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"limit":1.5}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"limit":"1"}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"ratio":"1"}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"mode":"c"}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"flag":null}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"tags":["abcd"]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"tags":["\u00e9\u00e9\u00e9"]}`,
		`{"device_id":` + id + `,"device_id":"x","messages":[{"interface":"a","path":"/x"}]}`,
		`{"device_id":"x","device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}]} x`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}`,
		`{"device_\u0069d":` + id + `,"messages":[{"interface":"a","path":"/x"}]}`,
		"{\"device_id\":" + id + ",\"messages\":[{\"interface\":\"\xff\",\"path\":\"/x\"}]}",
	}...)
	for _, doc := range docs {
		c := quickCursor{b: []byte(doc)}
		quick := len(doc) > 0 && json.Valid([]byte(doc)) && c.value(s.quick) && c.end()
		_, full := s.validate("request", json.RawMessage(doc))
		if quick && full != nil {
			t.Errorf("quick check accepted %s, which the validator refuses: %v", doc, full)
		}
		_, lazy := s.validateLazy("request", json.RawMessage(doc))
		if fmt.Sprint(lazy) != fmt.Sprint(full) {
			t.Errorf("%s: validateLazy %v, validate %v", doc, lazy, full)
		}
	}
	// Schemas with keywords the check does not cover get none.
	for _, raw := range []string{`{"oneOf":[{"type":"string"}]}`, `{"properties":{"a":{"const":1}}}`, `false`} {
		s, err := compileSchema("x", json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		if s.quick != nil {
			t.Errorf("%s: a quick check", raw)
		}
	}
}

// BenchmarkValidateBatch compares validate and validateLazy on a request of
// 1000 messages.
func BenchmarkValidateBatch(b *testing.B) {
	s, err := schemaFor("bench", reflect.TypeFor[struct {
		DeviceID string         `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
		Messages []quickMessage `json:"messages" jsonschema:"minItems=1,maxItems=10000"`
	}]())
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString(`{"device_id":"abcdefghijABCDEFGHIJ_-","messages":[`)
	for k := range 1000 {
		if k > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"interface":"com.example.Bench","path":"/s%d/v","value":%d.5}`, k%16, k)
	}
	sb.WriteString(`]}`)
	raw := json.RawMessage(sb.String())
	for _, c := range []struct {
		name string
		f    func(string, json.RawMessage) (any, error)
	}{{"validate", s.validate}, {"validateLazy", s.validateLazy}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.f("request", raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
