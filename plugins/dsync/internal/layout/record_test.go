package layout

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// shopEntity has one field of every type plus nesting and lists.
func shopEntity() Entity {
	return Entity{
		EntityName: "product", Treekey: "product", EndpointURL: "/entity/product", EntityToken: "product-1",
		Fields: []Field{
			{Treekey: "product.sku", Type: TypeText, Name: "sku", PrimaryKey: true, Required: true},
			{Treekey: "product.name", Type: TypeText, Name: "name", Required: true},
			{Treekey: "product.price", Type: TypeNumber, Name: "price"},
			{Treekey: "product.homepage", Type: TypeURL, Name: "homepage"},
			{Treekey: "product.contact", Type: TypeEmail, Name: "contact"},
			{Treekey: "product.released", Type: TypeDate, Name: "released"},
			{Treekey: "product.opens", Type: TypeTime, Name: "opens"},
			{Treekey: "product.updated", Type: TypeDatetime, Name: "updated"},
			{Treekey: "product.legacy_date", Type: TypeDate, DateFormat: "%d/%m/%Y", Name: "legacy_date"},
			{Treekey: "product.php_date", Type: TypeDate, DateFormat: "d.m.Y", Name: "php_date"},
			{Treekey: "product.active", Type: TypeBoolean, Name: "active"},
			{Treekey: "product.extra", Type: TypeObject, Name: "extra"},
			{Treekey: "product.total", Type: TypeMath, Name: "total"},
			{Treekey: "product.anything", Type: TypeCustom, Name: "anything"},
			{Treekey: "product.tags", Type: TypeText, Multiple: true, Name: "tags"},
			{Treekey: "product.size.width", Type: TypeNumber, Name: "width", Required: true},
			{Treekey: "product.size.unit", Type: TypeText, Name: "unit"},
			{Treekey: "external.ref", Type: TypeText, Name: "ref"},
		},
	}
}

func shopSchema(t testing.TB) *RecordSchema {
	t.Helper()
	e := shopEntity()
	s, err := e.RecordSchema("data_layout[0]")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestValidateRecordValid(t *testing.T) {
	t.Parallel()
	s := shopSchema(t)
	full := `{"sku":"A-1","name":"Chair","price":12.5,"homepage":"https://example.com/chair","contact":"sales@example.com",
		"released":"2024-02-29","opens":"09:30","updated":"2024-03-01T10:00:00+01:00","legacy_date":"31/12/2023","php_date":"31.12.2023",
		"active":true,"extra":{"any":["thing"]},"total":"=price*2","anything":[1,{"x":null}],"tags":["a","b"],
		"size":{"width":3,"unit":"cm"},"external":{"ref":"r"}}`
	for _, doc := range []string{
		full,
		`{"sku":"A-1","name":"Chair","size":{"width":0}}`,
		`{"sku":"A-1","name":"Chair","size":{"width":1},"price":null,"tags":[],"opens":"23:59:59.5","updated":"2024-03-01 10:00:00"}`,
	} {
		r, err := s.Validate([]byte(doc))
		if err != nil {
			t.Fatalf("Validate(%s): %v", doc, err)
		}
		if r.ID != "A-1" || !json.Valid(r.Data) || strings.ContainsAny(string(r.Data), "\n\t") {
			t.Fatalf("record %+v", r)
		}
	}
}

func TestValidateRecordErrors(t *testing.T) {
	t.Parallel()
	s := shopSchema(t)
	base := `"sku":"A-1","name":"Chair","size":{"width":1}`
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"not json", `{`, []string{"record is not valid JSON"}},
		{"trailing", `{"sku":"A"} {}`, []string{"record has trailing data"}},
		{"array", `[]`, []string{"record must be a JSON object"}},
		{"missing required and pk", `{"size":{"width":1}}`, []string{"name: is required", "sku: is required"}},
		{"null counts as missing", `{"sku":null,"name":"x","size":{"width":1}}`, []string{"sku: is required"}},
		{"missing container", `{"sku":"A","name":"x"}`, []string{"size.width: is required"}},
		{"container not object", `{"sku":"A","name":"x","size":5}`, []string{"size: must be an object"}},
		{"text", `{"sku":1,"name":"x","size":{"width":1}}`, []string{"sku: must be a string (type text)"}},
		{"number", `{` + base + `,"price":"12"}`, []string{"price: must be a JSON number"}},
		{"nested number", `{"sku":"A","name":"x","size":{"width":"wide"}}`, []string{"size.width: must be a JSON number"}},
		{"url", `{` + base + `,"homepage":"example.com/x"}`, []string{"homepage: must be an absolute URL"}},
		{"url type", `{` + base + `,"homepage":5}`, []string{"homepage: must be a string holding an absolute URL"}},
		{"email", `{` + base + `,"contact":"Sales <sales@example.com>"}`, []string{"contact: must be a bare email address"}},
		{"email junk", `{` + base + `,"contact":"nope"}`, []string{"contact: must be a bare email address"}},
		{"date", `{` + base + `,"released":"2024-02-30"}`, []string{"released: must be a date like 2006-01-02"}},
		{"time", `{` + base + `,"opens":"25:00"}`, []string{"opens: must be a time like 15:04:05"}},
		{"datetime", `{` + base + `,"updated":"yesterday"}`, []string{"updated: must be a date-time"}},
		{"strftime date", `{` + base + `,"legacy_date":"2023-12-31"}`, []string{`legacy_date: must match date_format "%d/%m/%Y"`}},
		{"opaque date format", `{` + base + `,"php_date":" "}`, []string{"php_date: must not be empty"}},
		{"date not string", `{` + base + `,"released":20240101}`, []string{"released: must be a string (type date)"}},
		{"boolean", `{` + base + `,"active":"true"}`, []string{"active: must be true or false"}},
		{"object", `{` + base + `,"extra":[1]}`, []string{"extra: must be a JSON object"}},
		{"multiple not array", `{` + base + `,"tags":"a"}`, []string{"tags: must be an array of text values"}},
		{"multiple element", `{` + base + `,"tags":["a",2,null]}`, []string{"tags[1]: must be a string", "tags[2]: must not be null"}},
		{"unknown top", `{` + base + `,"colour":"red"}`, []string{"colour: unknown field"}},
		{"unknown nested", `{"sku":"A","name":"x","size":{"width":1,"depth":2}}`, []string{"size.depth: unknown field"}},
		{"pk empty", `{"sku":"","name":"x","size":{"width":1}}`, []string{"sku: primary key must not be empty"}},
		{"pk too long", `{"sku":"` + strings.Repeat("x", MaxRecordIDLen+1) + `","name":"x","size":{"width":1}}`, []string{"sku: primary key longer than"}},
		{"all at once", `{"sku":true,"price":"x","size":{"width":null},"zzz":1}`, []string{
			"name: is required", "price: must be a JSON number", "size.width: is required", "sku: must be a string", "zzz: unknown field",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.Validate([]byte(tc.doc))
			checkViolations(t, err, tc.want)
		})
	}
}

func TestNumberPrimaryKey(t *testing.T) {
	t.Parallel()
	l, err := Generate(productEntities())
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := l.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	s := schemas["orderline-0123456789abcdef0123456789abcdef"]
	r, err := s.Validate([]byte(`{"id":42,"tags":["x"],"placed":"2024-01-02 03:04"}`))
	if err != nil || r.ID != "42" {
		t.Fatalf("got %+v, %v", r, err)
	}
	if id, err := s.ParseRecordID("42"); err != nil || id != "42" {
		t.Fatalf("ParseRecordID(42) = %q, %v", id, err)
	}
	for _, bad := range []string{"", "abc", "0x10", "NaN", strings.Repeat("1", MaxRecordIDLen+1)} {
		if _, err := s.ParseRecordID(bad); err == nil {
			t.Errorf("ParseRecordID(%q) accepted", bad)
		}
	}
	text := schemas["source-1-product-b5503a0ae5f3bc01b6a2da68afd33305"]
	if id, err := text.ParseRecordID("a/b c"); err != nil || id != "a/b c" {
		t.Fatalf("text id: %q %v", id, err)
	}
}

func TestRecordSchemaRequirements(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Entity)
		want   []string
	}{
		{"no primary key", func(e *Entity) { e.Fields[0].PrimaryKey = false }, []string{"data_layout[0].fields: an entity served by the connector needs exactly one field with primary_key true"}},
		{"two primary keys", func(e *Entity) { e.Fields[1].PrimaryKey = true }, []string{"data_layout[0].fields[1].primary_key: an entity served by the connector needs exactly one primary key"}},
		{"multiple primary key", func(e *Entity) { e.Fields[0].Multiple = true }, []string{"data_layout[0].fields[0].multiple: a primary key field cannot be multiple"}},
		{"object primary key", func(e *Entity) { e.Fields[0].Type = TypeObject }, []string{`data_layout[0].fields[0].type: a primary key field cannot be of type "object"`}},
		{"empty segment", func(e *Entity) { e.Fields[1].Treekey = "product..name" }, []string{`data_layout[0].fields[1].treekey: "product..name" does not name a field`}},
		{"entity treekey itself", func(e *Entity) { e.Fields[1].Treekey = "product." }, []string{`data_layout[0].fields[1].treekey: "product." does not name a field`}},
		{"same place", func(e *Entity) { e.Fields[1].Treekey = "sku" }, []string{`data_layout[0].fields[1].treekey: "sku" places the field at "sku" like data_layout[0].fields[0]`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := shopEntity()
			tc.mutate(&e)
			l := &Layout{DataLayout: []Entity{e}}
			_, err := l.Schemas()
			checkViolations(t, err, tc.want)
		})
	}
}

func FuzzValidateRecord(f *testing.F) {
	for _, s := range []string{
		`{"sku":"A-1","name":"Chair","size":{"width":1}}`,
		`{"sku":"A-1","name":"Chair","size":{"width":1},"tags":["a"],"extra":{},"updated":"2024-03-01T10:00:00Z","legacy_date":"01/02/2003"}`,
		`{}`, `[]`, `null`, `{"size":[]}`, `{"sku":1e400}`, `{"tags":[null]}`,
	} {
		f.Add([]byte(s))
	}
	s := shopSchema(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := s.Validate(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) == 0 {
				t.Fatalf("want violations, got %v", err)
			}
			return
		}
		if r.ID == "" || !json.Valid(r.Data) {
			t.Fatalf("bad record %+v", r)
		}
		// A valid record stays valid once compacted.
		r2, err := s.Validate(r.Data)
		if err != nil || r2.ID != r.ID {
			t.Fatalf("compacted record not valid: %v", err)
		}
	})
}
