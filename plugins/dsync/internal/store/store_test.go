package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/plugins/dsync/internal/layout"
	"github.com/connector-host/connector-host/sdk"
)

const (
	productTok = "product-0123456789abcdef0123456789abcdef"
	orderTok   = "order-0123456789abcdef0123456789abcdef"
)

func testLayout(t testing.TB) *layout.Layout {
	t.Helper()
	l, err := layout.Generate([]layout.Entity{
		{EntityName: "product", Treekey: "product", EndpointURL: "/entity/product", EntityToken: productTok, Fields: []layout.Field{
			{Treekey: "product.sku", Type: layout.TypeText, Name: "sku", PrimaryKey: true, Required: true},
			{Treekey: "product.name", Type: layout.TypeText, Name: "name", Required: true},
			{Treekey: "product.price", Type: layout.TypeNumber, Name: "price"},
		}},
		{EntityName: "order", Treekey: "order", EndpointURL: "/entity/order", EntityToken: orderTok, Fields: []layout.Field{
			{Treekey: "order.id", Type: layout.TypeNumber, Name: "id", PrimaryKey: true},
			{Treekey: "order.email", Type: layout.TypeEmail, Name: "email", Required: true},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, testLayout(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func code(err error) sdk.Code {
	var se *sdk.Error
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

func TestCRUD(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, t.TempDir())
	rec, err := s.Create(ctx, productTok, []byte(`{"sku":"A-1", "name":"Chair"}`))
	if err != nil || rec.ID != "A-1" {
		t.Fatalf("create: %+v %v", rec, err)
	}
	if got, err := s.Get(ctx, productTok, "A-1"); err != nil || string(got) != `{"sku":"A-1","name":"Chair"}` {
		t.Fatalf("get: %s %v", got, err)
	}
	if _, err := s.Create(ctx, productTok, []byte(`{"sku":"A-1","name":"Other"}`)); code(err) != sdk.Conflict || !strings.Contains(err.Error(), `sku "A-1" already exists`) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := s.Update(ctx, productTok, "A-1", []byte(`{"sku":"A-1","name":"Table","price":3}`)); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, err := s.Update(ctx, productTok, "", []byte(`{"sku":"A-1","name":"Desk"}`)); err != nil {
		t.Fatalf("update without id: %v", err)
	}
	if got, _ := s.Get(ctx, productTok, "A-1"); string(got) != `{"sku":"A-1","name":"Desk"}` {
		t.Fatalf("after update: %s", got)
	}
	if _, err := s.Update(ctx, productTok, "B-2", []byte(`{"sku":"A-1","name":"x"}`)); code(err) != sdk.BadRequest || !strings.Contains(err.Error(), `sku: "A-1" does not match the record id "B-2"`) {
		t.Fatalf("id mismatch: %v", err)
	}
	if _, err := s.Update(ctx, productTok, "", []byte(`{"sku":"nope","name":"x"}`)); code(err) != sdk.NotFound {
		t.Fatalf("update missing: %v", err)
	}
	if got, err := s.Delete(ctx, productTok, "A-1"); err != nil || !strings.Contains(string(got), "Desk") {
		t.Fatalf("delete: %s %v", got, err)
	}
	if _, err := s.Get(ctx, productTok, "A-1"); code(err) != sdk.NotFound || !strings.Contains(err.Error(), `sku "A-1" not found`) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := s.Delete(ctx, productTok, "A-1"); code(err) != sdk.NotFound {
		t.Fatalf("delete twice: %v", err)
	}
	// Same id in another entity is independent; number ids.
	if _, err := s.Create(ctx, orderTok, []byte(`{"id":7,"email":"a@example.com"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, orderTok, "7"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, orderTok, "seven"); code(err) != sdk.BadRequest || !strings.Contains(err.Error(), "id: record id \"seven\" is not a number") {
		t.Fatalf("bad number id: %v", err)
	}
	if _, err := s.Get(ctx, "nope", "1"); code(err) != sdk.NotFound {
		t.Fatalf("unknown entity: %v", err)
	}
}

func TestValidationNamesFields(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, t.TempDir())
	tests := []struct {
		tok, doc string
		want     []string
	}{
		{productTok, `{"sku":"A"}`, []string{"name: is required"}},
		{productTok, `{"sku":"A","name":"x","price":"cheap"}`, []string{"price: must be a JSON number"}},
		{productTok, `{"name":"x","color":"red"}`, []string{"sku: is required", "color: unknown field"}},
		{orderTok, `{"id":1,"email":"not-an-email"}`, []string{"email: must be a bare email address"}},
		{orderTok, `[]`, []string{"record must be a JSON object"}},
	}
	for _, tc := range tests {
		for _, write := range []func() error{
			func() error { _, err := s.Create(ctx, tc.tok, []byte(tc.doc)); return err },
			func() error { _, err := s.Update(ctx, tc.tok, "", []byte(tc.doc)); return err },
		} {
			err := write()
			if code(err) != sdk.BadRequest {
				t.Fatalf("%s: want bad_request, got %v", tc.doc, err)
			}
			var ve *layout.ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) != len(tc.want) {
				t.Fatalf("%s: violations %v", tc.doc, err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(ve.Violations[i].String(), w) {
					t.Errorf("%s: violation %d = %s, want %s", tc.doc, i, ve.Violations[i], w)
				}
			}
		}
	}
	if n, _ := s.Count(ctx, productTok); n != 0 {
		t.Fatalf("invalid records stored: %d", n)
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, t.TempDir())
	for i := range 7 {
		if _, err := s.Create(ctx, productTok, []byte(fmt.Sprintf(`{"sku":"p%d","name":"n"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, orderTok, []byte(`{"id":1,"email":"a@example.com"}`)); err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		p, err := s.List(ctx, productTok, 3, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Records {
			var v struct{ SKU string }
			_ = json.Unmarshal(r, &v)
			got = append(got, v.SKU)
		}
		if pages == 1 {
			// Deleting a seen record and adding one mid-listing neither
			// repeats nor skips records.
			if _, err := s.Delete(ctx, productTok, "p0"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Create(ctx, productTok, []byte(`{"sku":"late","name":"n"}`)); err != nil {
				t.Fatal(err)
			}
		}
		if p.NextCursor == "" {
			break
		}
		if pages > 10 {
			t.Fatal("listing does not end")
		}
		cursor = p.NextCursor
	}
	if want := "p0 p1 p2 p3 p4 p5 p6 late"; strings.Join(got, " ") != want || pages != 3 {
		t.Fatalf("got %v in %d pages, want %s", got, pages, want)
	}
	p, err := s.List(ctx, productTok, 0, "")
	if err != nil || len(p.Records) != 7 || p.NextCursor != "" {
		t.Fatalf("default limit: %d %q %v", len(p.Records), p.NextCursor, err)
	}
	empty, err := s.List(ctx, "nope", 1, "")
	if code(err) != sdk.NotFound || empty.Records != nil {
		t.Fatalf("unknown entity: %v", err)
	}
	p, err = s.List(ctx, orderTok, 1, "")
	if err != nil || len(p.Records) != 1 || p.NextCursor != "" {
		t.Fatalf("exact page: %+v %v", p, err)
	}
	for _, bad := range []int{-1, MaxLimit + 1} {
		if _, err := s.List(ctx, productTok, bad, ""); code(err) != sdk.BadRequest || !strings.Contains(err.Error(), "limit: ") {
			t.Errorf("limit %d: %v", bad, err)
		}
	}
	for _, bad := range []string{"xyz", "c2VxOi0x" /* seq:-1 */, "c2VxOmFiYw" /* seq:abc */, "!!"} {
		if _, err := s.List(ctx, productTok, 1, bad); code(err) != sdk.InvalidPageToken || !strings.Contains(err.Error(), "cursor: ") {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}

func TestSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s, err := Open(dir, testLayout(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, productTok, []byte(`{"sku":"keep","name":"Chair"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Size() == 0 {
		t.Fatalf("db file: %v", err)
	}
	s2 := open(t, dir)
	if got, err := s2.Get(ctx, productTok, "keep"); err != nil || string(got) != `{"sku":"keep","name":"Chair"}` {
		t.Fatalf("after reopen: %s %v", got, err)
	}
	if _, err := s2.Create(ctx, productTok, []byte(`{"sku":"keep","name":"Chair"}`)); code(err) != sdk.Conflict {
		t.Fatalf("uniqueness lost on reopen: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	if _, err := Open(t.TempDir(), nil); err == nil {
		t.Fatal("nil layout")
	}
	if _, err := Open("", testLayout(t)); err == nil {
		t.Fatal("empty dir")
	}
	l := testLayout(t)
	l.DataLayout[1].Fields[0].PrimaryKey = false
	if _, err := Open(t.TempDir(), l); err == nil || !strings.Contains(err.Error(), "data_layout[1].fields: an entity served by the connector needs exactly one field with primary_key true") {
		t.Fatalf("unservable layout: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "sub"), testLayout(t)); err == nil {
		t.Fatal("data dir under a file")
	}
}

func TestConcurrentWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, t.TempDir())
	errs := make(chan error, 40)
	for i := range 40 {
		go func() {
			_, err := s.Create(ctx, productTok, []byte(fmt.Sprintf(`{"sku":"c%d","name":"n"}`, i%20)))
			errs <- err
		}()
	}
	conflicts := 0
	for range 40 {
		switch err := <-errs; code(err) {
		case "":
		case sdk.Conflict:
			conflicts++
		default:
			t.Fatal(err)
		}
	}
	if n, _ := s.Count(ctx, productTok); n != 20 || conflicts != 20 {
		t.Fatalf("%d records, %d conflicts", n, conflicts)
	}
}
