package dsyncemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/ncruces/go-strftime"
)

// The connector's inbound API, as the Poller speaks it (the plugin's
// inbound handler implements the same):
//   - every request carries the API key in Auth-Token;
//   - every answer is {"status":N,"message":"...","detail":"...","data":...};
//   - GET {root}/datalayout → data = {"data_layout":[...]};
//   - GET {root}{endpoint_url}?limit=N&cursor=C → data =
//     {"records":[...],"next_cursor":"..."} ("" on the last page);
//   - GET|PUT|DELETE {root}{endpoint_url}/{id} (id path-escaped) read,
//     replace or delete one record; POST {root}{endpoint_url} creates one.

// Poller calls a connector's inbound endpoints like the DSYNC platform.
type Poller struct {
	// BaseURL is the connector's inbound root, e.g.
	// "http://127.0.0.1:8080/v1/inbound/dsync".
	BaseURL string
	// APIKey is sent in Auth-Token.
	APIKey string
	// Client is the HTTP client (nil = http.DefaultClient).
	Client *http.Client
	// PageSize is the list page size (0 = 2, to exercise pagination).
	PageSize int
	// MaxPages bounds a listing (0 = 10000).
	MaxPages int
}

// Entity is the part of a data layout entity the platform uses.
type Entity struct {
	EntityName  string  `json:"entity_name"`
	Treekey     string  `json:"treekey"`
	EndpointURL string  `json:"endpoint_url"`
	EntityToken string  `json:"entity_token"`
	Fields      []Field `json:"fields"`
}

// Field is the part of a data layout field the platform uses.
type Field struct {
	Treekey    string `json:"treekey"`
	Type       string `json:"type"`
	Name       string `json:"name"`
	Multiple   bool   `json:"multiple"`
	Required   bool   `json:"required"`
	PrimaryKey bool   `json:"primary_key"`
	DateFormat string `json:"date_format"`
}

// StatusError is a non-200 answer of the connector.
type StatusError struct {
	Method, URL string
	Status      int
	Message     string
	Detail      string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.URL, e.Status, e.Message, e.Detail)
}

// Page is one page of a listing.
type Page struct {
	Records    []json.RawMessage `json:"records"`
	NextCursor string            `json:"next_cursor"`
}

// DataLayout reads the connector's data layout.
func (p *Poller) DataLayout(ctx context.Context) ([]Entity, error) {
	var data struct {
		DataLayout []Entity `json:"data_layout"`
	}
	if err := p.do(ctx, http.MethodGet, "/datalayout", nil, &data); err != nil {
		return nil, err
	}
	if len(data.DataLayout) == 0 {
		return nil, errors.New("data layout has no entities")
	}
	return data.DataLayout, nil
}

// Create posts a new record to the entity's endpoint.
func (p *Poller) Create(ctx context.Context, e Entity, rec any) (json.RawMessage, error) {
	var out json.RawMessage
	return out, p.do(ctx, http.MethodPost, endpointPath(e), rec, &out)
}

// Get reads one record by primary key.
func (p *Poller) Get(ctx context.Context, e Entity, id string) (json.RawMessage, error) {
	var out json.RawMessage
	return out, p.do(ctx, http.MethodGet, itemPath(e, id), nil, &out)
}

// Update replaces one record.
func (p *Poller) Update(ctx context.Context, e Entity, id string, rec any) (json.RawMessage, error) {
	var out json.RawMessage
	return out, p.do(ctx, http.MethodPut, itemPath(e, id), rec, &out)
}

// Delete deletes one record.
func (p *Poller) Delete(ctx context.Context, e Entity, id string) error {
	return p.do(ctx, http.MethodDelete, itemPath(e, id), nil, nil)
}

// List reads one page of records.
func (p *Poller) List(ctx context.Context, e Entity, limit int, cursor string) (Page, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var page Page
	err := p.do(ctx, http.MethodGet, endpointPath(e)+"?"+q.Encode(), nil, &page)
	return page, err
}

// ListAll follows the cursors to read every record of the entity.
func (p *Poller) ListAll(ctx context.Context, e Entity) ([]json.RawMessage, error) {
	size, maxPages := p.PageSize, p.MaxPages
	if size <= 0 {
		size = 2
	}
	if maxPages <= 0 {
		maxPages = 10000
	}
	var all []json.RawMessage
	cursor := ""
	for range maxPages {
		page, err := p.List(ctx, e, size, cursor)
		if err != nil {
			return nil, err
		}
		if len(page.Records) > size {
			return nil, fmt.Errorf("page of %d records exceeds limit %d", len(page.Records), size)
		}
		all = append(all, page.Records...)
		if page.NextCursor == "" {
			return all, nil
		}
		if page.NextCursor == cursor {
			return nil, fmt.Errorf("cursor %q does not advance", cursor)
		}
		cursor = page.NextCursor
	}
	return nil, fmt.Errorf("listing did not end within %d pages", maxPages)
}

// Report summarises a Cycle.
type Report struct {
	Entities, Created, Updated, Listed, Deleted int
}

// Cycle plays the platform against the connector: it reads the data layout,
// then for every entity creates n sample records (n < 1 means 3), reads one
// back, updates each, lists them all (following cursors) and checks the
// listing holds exactly the updated records, then deletes them and checks
// the listing is empty. Records already present are left alone.
func (p *Poller) Cycle(ctx context.Context, n int) (Report, error) {
	if n < 1 {
		n = 3
	}
	var rep Report
	entities, err := p.DataLayout(ctx)
	if err != nil {
		return rep, err
	}
	for _, e := range entities {
		rep.Entities++
		before, err := p.ListAll(ctx, e)
		if err != nil {
			return rep, fmt.Errorf("entity %s: list: %w", e.EntityName, err)
		}
		want := map[string]map[string]any{}
		for i := range n {
			rec, id, err := SampleRecord(e, 1_000_000+i, false)
			if err != nil {
				return rep, err
			}
			if _, err := p.Create(ctx, e, rec); err != nil {
				return rep, fmt.Errorf("entity %s: create %s: %w", e.EntityName, id, err)
			}
			rep.Created++
			if i == 0 {
				got, err := p.Get(ctx, e, id)
				if err != nil {
					return rep, fmt.Errorf("entity %s: get %s: %w", e.EntityName, id, err)
				}
				if !sameJSON(got, rec) {
					return rep, fmt.Errorf("entity %s: get %s returned %s, want the created record", e.EntityName, id, got)
				}
			}
			upd, _, err := SampleRecord(e, 1_000_000+i, true)
			if err != nil {
				return rep, err
			}
			if _, err := p.Update(ctx, e, id, upd); err != nil {
				return rep, fmt.Errorf("entity %s: update %s: %w", e.EntityName, id, err)
			}
			rep.Updated++
			want[id] = upd
		}
		all, err := p.ListAll(ctx, e)
		if err != nil {
			return rep, fmt.Errorf("entity %s: list: %w", e.EntityName, err)
		}
		rep.Listed += len(all)
		if len(all) != len(before)+n {
			return rep, fmt.Errorf("entity %s: listing has %d records, want %d", e.EntityName, len(all), len(before)+n)
		}
		found := 0
		for _, raw := range all {
			for _, rec := range want {
				if sameJSON(raw, rec) {
					found++
				}
			}
		}
		if found != n {
			return rep, fmt.Errorf("entity %s: listing holds %d of the %d updated records", e.EntityName, found, n)
		}
		for id := range want {
			if err := p.Delete(ctx, e, id); err != nil {
				return rep, fmt.Errorf("entity %s: delete %s: %w", e.EntityName, id, err)
			}
			rep.Deleted++
			var se *StatusError
			if _, err := p.Get(ctx, e, id); !errors.As(err, &se) || se.Status != http.StatusNotFound {
				return rep, fmt.Errorf("entity %s: get after delete %s: want 404, got %w", e.EntityName, id, err)
			}
		}
		after, err := p.ListAll(ctx, e)
		if err != nil {
			return rep, fmt.Errorf("entity %s: list: %w", e.EntityName, err)
		}
		if len(after) != len(before) {
			return rep, fmt.Errorf("entity %s: %d records left after deleting, want %d", e.EntityName, len(after), len(before))
		}
	}
	return rep, nil
}

// SampleRecord builds a record of entity e valid for its fields' types; k
// makes it distinct (its primary key derives from k) and updated varies the
// non-key values. Field paths follow the record convention: a field's
// treekey relative to the entity's treekey, in dot notation. It returns the
// record and its primary key as text.
func SampleRecord(e Entity, k int, updated bool) (map[string]any, string, error) {
	rec := map[string]any{}
	id := ""
	for _, f := range e.Fields {
		tk := strings.TrimPrefix(f.Treekey, e.Treekey+".")
		path := strings.Split(tk, ".")
		v := sampleValue(f, k, updated)
		if f.PrimaryKey {
			v = sampleValue(f, k, false)
			switch x := v.(type) {
			case string:
				id = x
			case json.Number:
				id = x.String()
			}
		}
		if v == nil {
			continue
		}
		if f.Multiple {
			v = []any{v}
		}
		m := rec
		for _, seg := range path[:len(path)-1] {
			sub, ok := m[seg].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[seg] = sub
			}
			m = sub
		}
		m[path[len(path)-1]] = v
	}
	if id == "" {
		return nil, "", fmt.Errorf("entity %s: no primary key field to build a sample record", e.EntityName)
	}
	return rec, id, nil
}

func sampleValue(f Field, k int, updated bool) any {
	n := k
	if updated {
		n = k + 7
	}
	switch f.Type {
	case "text":
		if updated {
			return fmt.Sprintf("%s-%d-updated", f.Name, k)
		}
		return fmt.Sprintf("%s-%d", f.Name, k)
	case "number":
		return json.Number(strconv.Itoa(n))
	case "url":
		return fmt.Sprintf("https://example.com/%s/%d", url.PathEscape(f.Name), n)
	case "email":
		return fmt.Sprintf("user%d@example.com", n)
	case "date", "time", "datetime":
		t := time.Date(2024, 1, n%28+1, 10, n%60, 0, 0, time.UTC)
		switch {
		case strings.Contains(f.DateFormat, "%"):
			return strftime.Format(f.DateFormat, t)
		case f.DateFormat != "":
			return t.Format(time.DateOnly) // an opaque format: any non-empty text
		case f.Type == "date":
			return t.Format(time.DateOnly)
		case f.Type == "time":
			return t.Format(time.TimeOnly)
		}
		return t.Format(time.RFC3339)
	case "boolean":
		return updated
	case "object":
		return map[string]any{"n": json.Number(strconv.Itoa(n))}
	case "math", "custom":
		return fmt.Sprintf("v%d", n)
	}
	return nil
}

// endpointPath is the escaped path of the entity's endpoint_url below the
// connector's inbound root (an absolute URL contributes its path, as the
// platform reaches the connector through BaseURL).
func endpointPath(e Entity) string {
	u, err := url.Parse(e.EndpointURL)
	if err != nil {
		return e.EndpointURL
	}
	return strings.TrimSuffix(u.EscapedPath(), "/")
}

func itemPath(e Entity, id string) string {
	return endpointPath(e) + "/" + url.PathEscape(id)
}

// do sends one request and decodes the envelope's data into out.
func (p *Poller) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimSuffix(p.BaseURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Auth-Token", p.APIKey)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	var env struct {
		Status  int             `json:"status"`
		Message string          `json:"message"`
		Detail  string          `json:"detail"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s %s: %d with a body that is not the JSON envelope: %.200q", method, u, resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Method: method, URL: u, Status: resp.StatusCode, Message: env.Message, Detail: env.Detail}
	}
	if env.Status != http.StatusOK || env.Message != "OK" {
		return fmt.Errorf("%s %s: HTTP 200 but envelope status %d message %q", method, u, env.Status, env.Message)
	}
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			return fmt.Errorf("%s %s: data: %w", method, u, err)
		}
	}
	return nil
}

// sameJSON reports whether raw and v encode the same JSON value.
func sameJSON(raw json.RawMessage, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	var x, y any
	if json.Unmarshal(raw, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
