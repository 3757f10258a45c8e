package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// productEntities is the layout of the SDK README plus a second entity
// exercising every attribute.
func productEntities() []Entity {
	return []Entity{
		{
			EntityName:  "product",
			Treekey:     "product",
			EndpointURL: "/entity/product",
			EntityToken: "source-1-product-b5503a0ae5f3bc01b6a2da68afd33305",
			Fields: []Field{
				{PrimaryKey: true, Required: true, Treekey: "product.sku", Description: "A product SKU", Name: "sku", Type: TypeText},
				{Treekey: "product.price", Name: "price", Type: TypeNumber},
			},
		},
		{
			EntityName:  "order line",
			Treekey:     "order",
			EndpointURL: "/entity/order",
			EntityToken: "orderline-0123456789abcdef0123456789abcdef",
			Fields: []Field{
				{ID: "7", Treekey: "order.id", Value: "", Type: TypeNumber, PrimaryKey: true, Required: true, Name: "id"},
				{Treekey: "order.placed", Type: TypeDatetime, DateFormat: "%Y-%m-%d %H:%M", Name: "placed", Functions: []string{"trim", "upper"}},
				{Treekey: "order.tags", Type: TypeText, Multiple: true, Name: "tags <b>&</b>", Description: "ünïcode"},
				{Treekey: "order.paid", Type: TypeBoolean, BoolSettings: "yes/no", ForeignKey: "payment.id", Name: "paid"},
			},
		},
	}
}

func TestGenerateGolden(t *testing.T) {
	t.Parallel()
	l, err := Generate(productEntities())
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	got, err := l.JSON()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "layout.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("layout JSON differs from %s\ngot:  %s\nwant: %s", golden, got, want)
	}
	// json.Marshal of the value gives the same bytes apart from HTML escaping.
	viaMarshal, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viaMarshal, []byte(strings.NewReplacer(`<`, `\u003c`, `>`, `\u003e`, `&`, `\u0026`).Replace(string(want)))) {
		t.Fatalf("json.Marshal differs:\n%s", viaMarshal)
	}
}

func TestWireKeyOrder(t *testing.T) {
	t.Parallel()
	l, err := Generate(productEntities()[:1])
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.JSON()
	keys := regexp.MustCompile(`"([a-z_]+)":`).FindAllStringSubmatch(string(got), -1)
	var order []string
	for _, k := range keys {
		order = append(order, k[1])
	}
	want := []string{"data_layout", "entity_name", "treekey", "endpoint_url", "entity_token", "fields",
		"id", "treekey", "value", "type", "multiple", "date_format", "required", "functions", "primary_key", "foreign_key", "bool_settings", "name", "description",
		"id", "treekey", "value", "type", "multiple", "date_format", "required", "functions", "primary_key", "foreign_key", "bool_settings", "name", "description"}
	if !slices.Equal(order, want) {
		t.Fatalf("key order\ngot  %v\nwant %v", order, want)
	}
	if !strings.Contains(string(got), `"functions":[]`) || strings.Contains(string(got), "null") {
		t.Fatalf("functions must be [] and nothing null: %s", got)
	}
}

func TestGenerateDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	in := productEntities()
	l, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Fields[0].Name = "changed"
	in[1].Fields[1].Functions[0] = "changed"
	if l.DataLayout[0].Fields[0].Name != "sku" || l.DataLayout[1].Fields[1].Functions[0] != "trim" {
		t.Fatal("Generate result aliases its input")
	}
}

func TestGenerateRules(t *testing.T) {
	t.Parallel()
	valid := func() []Entity { return productEntities() }
	tests := []struct {
		name   string
		mutate func([]Entity) []Entity
		want   []string // "path: reason-substring", all and only these
	}{
		{"no entities", func([]Entity) []Entity { return nil }, []string{"entities: at least one entity is required"}},
		{"empty entities", func([]Entity) []Entity { return []Entity{} }, []string{"entities: at least one entity is required"}},
		{"entity without fields", func(e []Entity) []Entity { e[1].Fields = nil; return e }, []string{"entities[1].fields: at least one field is required"}},
		{"duplicate entity token", func(e []Entity) []Entity { e[1].EntityToken = e[0].EntityToken; return e },
			[]string{`entities[1].entity_token: "source-1-product-b5503a0ae5f3bc01b6a2da68afd33305" is already used by entities[0]`}},
		{"duplicate treekey", func(e []Entity) []Entity { e[1].Fields[2].Treekey = "order.id"; return e },
			[]string{`entities[1].fields[2].treekey: "order.id" is already used by entities[1].fields[0]`}},
		{"same treekey in two entities is fine", func(e []Entity) []Entity { e[1].Fields[0].Treekey = "product.sku"; return e }, nil},
		{"missing entity_name", func(e []Entity) []Entity { e[0].EntityName = ""; return e }, []string{"entities[0].entity_name: is required"}},
		{"blank entity treekey", func(e []Entity) []Entity { e[0].Treekey = "  "; return e }, []string{"entities[0].treekey: is required"}},
		{"missing endpoint_url", func(e []Entity) []Entity { e[1].EndpointURL = ""; return e }, []string{"entities[1].endpoint_url: is required"}},
		{"missing entity_token", func(e []Entity) []Entity { e[1].EntityToken = ""; return e }, []string{"entities[1].entity_token: is required"}},
		{"missing field treekey", func(e []Entity) []Entity { e[0].Fields[1].Treekey = ""; return e }, []string{"entities[0].fields[1].treekey: is required"}},
		{"missing field type", func(e []Entity) []Entity { e[1].Fields[0].Type = ""; return e }, []string{"entities[1].fields[0].type: is required"}},
		{"missing field name", func(e []Entity) []Entity { e[1].Fields[3].Name = ""; return e }, []string{"entities[1].fields[3].name: is required"}},
		{"unknown field type", func(e []Entity) []Entity { e[1].Fields[0].Type = "integer"; return e },
			[]string{`entities[1].fields[0].type: unknown field type "integer" (known: text, number, url, email, date, time, datetime, boolean, object, math, custom)`}},
		{"type is case sensitive", func(e []Entity) []Entity { e[0].Fields[0].Type = "Text"; return e }, []string{`entities[0].fields[0].type: unknown field type "Text"`}},
		{"all violations at once", func(e []Entity) []Entity {
			e[0].EntityName = ""
			e[0].Fields[0].Type = "bogus"
			e[0].Fields[1].Name = ""
			e[1].EntityToken = e[0].EntityToken
			e[1].Fields[1].Treekey = "order.id"
			e = append(e, Entity{EntityName: "x", Treekey: "x", EndpointURL: "/x", EntityToken: "x-1"})
			return e
		}, []string{
			"entities[0].entity_name: is required",
			`entities[0].fields[0].type: unknown field type "bogus"`,
			"entities[0].fields[1].name: is required",
			"entities[1].entity_token: \"source-1-product-b5503a0ae5f3bc01b6a2da68afd33305\" is already used by entities[0]",
			`entities[1].fields[1].treekey: "order.id" is already used by entities[1].fields[0]`,
			"entities[2].fields: at least one field is required",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := Generate(tc.mutate(valid()))
			checkViolations(t, err, tc.want)
			if err == nil && l == nil {
				t.Fatal("nil layout without error")
			}
			if vErr := Validate(tc.mutate(valid())); (vErr == nil) != (err == nil) {
				t.Fatalf("Validate and Generate disagree: %v vs %v", vErr, err)
			}
		})
	}
}

// checkViolations asserts err lists exactly the wanted violations, in order,
// each as "path: reason" with the reason matched as a prefix.
func checkViolations(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T %v", err, err)
	}
	if len(ve.Violations) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%v", len(ve.Violations), len(want), err)
	}
	for i, w := range want {
		if got := ve.Violations[i].String(); !strings.HasPrefix(got, w) {
			t.Errorf("violation %d\ngot  %s\nwant %s…", i, got, w)
		}
	}
}

func TestGenerateEntityToken(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^orderline-[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 200 {
		tok, err := GenerateEntityToken(" Order \tLine ")
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(tok) {
			t.Fatalf("token %q does not match %s", tok, re)
		}
		if seen[tok] {
			t.Fatalf("duplicate token %q", tok)
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", "   ", "a\x00b", "a\nb\x7f"} {
		if _, err := GenerateEntityToken(bad); err == nil || !strings.HasPrefix(err.Error(), "entity_name: ") {
			t.Errorf("GenerateEntityToken(%q) = %v, want entity_name error", bad, err)
		}
	}
	if tok, err := GenerateEntityToken("Ürün"); err != nil || !strings.HasPrefix(tok, "ürün-") {
		t.Errorf("unicode name: %q %v", tok, err)
	}
}

func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile(filepath.Join("testdata", "layout.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(want)
	if err != nil {
		t.Fatalf("Parse(golden): %v", err)
	}
	got, _ := l.JSON()
	if !bytes.Equal(got, want) {
		t.Fatalf("round trip differs:\n%s", got)
	}
	// Bare array and {"entities":...} forms, with attributes omitted.
	min := `[{"entity_name":"p","treekey":"p","endpoint_url":"/p","entity_token":"p-1","fields":[{"treekey":"p.a","type":"text","name":"a"}]}]`
	for _, doc := range []string{min, `{"entities":` + min + `}`, "\n " + min + "\n"} {
		l, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("Parse(%s): %v", doc, err)
		}
		out, _ := l.JSON()
		if !strings.Contains(string(out), `{"id":"","treekey":"p.a","value":"","type":"text","multiple":false,"date_format":"","required":false,"functions":[],"primary_key":false,"foreign_key":"","bool_settings":"","name":"a","description":""}`) {
			t.Fatalf("defaults not filled: %s", out)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"empty", "", []string{"empty document"}},
		{"not json", "{nope", []string{"not valid JSON"}},
		{"scalar", "42", []string{"expected a JSON object or array"}},
		{"no data_layout", `{"foo":[]}`, []string{"data_layout: is required"}},
		{"both roots", `{"data_layout":[],"entities":[]}`, []string{`give either "data_layout" or "entities"`}},
		{"empty list", `{"data_layout":[]}`, []string{"data_layout: at least one entity is required"}},
		{"null list", `{"data_layout":null}`, []string{"data_layout: at least one entity is required"}},
		{"list not array", `{"data_layout":{}}`, []string{"data_layout: must be an array"}},
		{"unknown top key", `{"data_layout":[{"entity_name":"p","treekey":"p","endpoint_url":"/p","entity_token":"t","fields":[{"treekey":"a","type":"text","name":"a"}]}],"x":1}`,
			[]string{"x: unknown attribute"}},
		{"entity not object", `{"data_layout":[1]}`, []string{"data_layout[0]: must be an object"}},
		{"wrong types and unknowns, all at once", `{"data_layout":[{"entity_name":5,"treekey":"p","endpoint_url":"/p","entity_token":"t","extra":true,"fields":[
			{"treekey":"a","type":"text","name":"a","required":"yes","functions":["f",2]},
			{"treekey":"a","type":"txt","name":"b","multiple":1},
			"nope"]}]}`,
			[]string{
				"data_layout[0].entity_name: must be a string",
				"data_layout[0].extra: unknown attribute",
				"data_layout[0].fields[0].functions[1]: must be a string",
				"data_layout[0].fields[0].required: must be a boolean",
				"data_layout[0].fields[1].multiple: must be a boolean",
				"data_layout[0].fields[2]: must be an object",
				`data_layout[0].fields[1].treekey: "a" is already used by data_layout[0].fields[0]`,
				`data_layout[0].fields[1].type: unknown field type "txt"`,
			}},
		{"fields not array", `[{"entity_name":"p","treekey":"p","endpoint_url":"/p","entity_token":"t","fields":{}}]`,
			[]string{"entities[0].fields: must be an array"}},
		{"field type not string", `[{"entity_name":"p","treekey":"p","endpoint_url":"/p","entity_token":"t","fields":[{"treekey":"a","type":1,"name":"a"}]}]`,
			[]string{"entities[0].fields[0].type: must be a string"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.doc))
			checkViolations(t, err, tc.want)
		})
	}
}

func TestLoadAndFromSetting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "layout.json")
	golden, _ := os.ReadFile(filepath.Join("testdata", "layout.golden.json"))
	if err := os.WriteFile(good, golden, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"data_layout":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Load(good)
	if err != nil || len(l.DataLayout) != 2 {
		t.Fatalf("Load: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	_, err = Load(bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "bad.json") {
		t.Fatalf("bad file: %v", err)
	}

	pathSetting, _ := json.Marshal(good)
	if l, err := FromSetting(pathSetting); err != nil || l.DataLayout[0].EntityName != "product" {
		t.Fatalf("FromSetting(path): %v", err)
	}
	if l, err := FromSetting(golden); err != nil || len(l.DataLayout) != 2 {
		t.Fatalf("FromSetting(inline): %v", err)
	}
	for _, s := range []string{``, `null`, `""`} {
		if _, err := FromSetting(json.RawMessage(s)); err == nil || !strings.HasPrefix(err.Error(), "data_layout: ") {
			t.Errorf("FromSetting(%q) = %v", s, err)
		}
	}
}

func TestLoadTooLarge(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "big.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("want size error, got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "layout.golden.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(golden), "", "[]", "{}", `{"data_layout":null}`, `[{"fields":[{}]}]`, `[1,"a",null]`,
		`{"entities":[{"entity_name":"p","treekey":"p","endpoint_url":"/p","entity_token":"t","fields":[{"treekey":"a","type":"text","name":"a"}]}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) && len(ve.Violations) == 0 {
				t.Fatal("ValidationError without violations")
			}
			return
		}
		// A parsed layout satisfies every rule and round-trips exactly.
		if err := Validate(l.DataLayout); err != nil {
			t.Fatalf("parsed layout breaks a rule: %v", err)
		}
		out, err := l.JSON()
		if err != nil {
			t.Fatal(err)
		}
		l2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		out2, _ := l2.JSON()
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
