package stoaemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s := New(opts)
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// do sends a request and returns status, headers and body.
func do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s: %v", req.URL.Path, err)
	}
	return resp.StatusCode, resp.Header, b
}

func login(t *testing.T, s *Server, email, password string) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, _ := http.NewRequest(http.MethodPost, s.AuthURL()+"/rest-auth/login/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	status, _, b := do(t, req)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("login body %q: %v", b, err)
	}
	return status, out
}

func token(t *testing.T, s *Server) string {
	t.Helper()
	status, out := login(t, s, DefaultEmail, DefaultPassword)
	tok, _ := out["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("login: status %d body %v", status, out)
	}
	return tok
}

func apiGet(t *testing.T, s *Server, tok, path string, q url.Values) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.APIURL()+path+"?"+q.Encode(), nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return do(t, req)
}

func orderQuery(p Product, offset, limit int, ascending string) url.Values {
	return url.Values{
		"product_group_name": {p.GroupName}, "product_name": {p.Name}, "workspace": {p.Workspace},
		"owner_id": {p.OwnerID}, "version": {p.Version}, "offset": {strconv.Itoa(offset)},
		"limit": {strconv.Itoa(limit)}, "ascending": {ascending},
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	tests := []struct {
		name, email, password string
		status                int
		field                 string
	}{
		{"ok", DefaultEmail, DefaultPassword, 200, "access_token"},
		{"wrong password", DefaultEmail, "nope", 400, "non_field_errors"},
		{"wrong email", "x@example.com", DefaultPassword, 400, "non_field_errors"},
		{"missing email", "", DefaultPassword, 400, "email"},
		{"missing password", DefaultEmail, "", 400, "password"},
	}
	for _, tc := range tests {
		status, out := login(t, s, tc.email, tc.password)
		if status != tc.status || out[tc.field] == nil {
			t.Errorf("%s: status %d body %v, want %d with %q", tc.name, status, out, tc.status, tc.field)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, s.AuthURL()+"/rest-auth/login/", strings.NewReader("{not json"))
	if status, _, _ := do(t, req); status != 400 {
		t.Errorf("bad JSON: status %d, want 400", status)
	}
	if st := s.Stats(); st.Logins != 6 || st.FailedLogins != 5 {
		t.Errorf("stats %+v, want 6 logins, 5 failed", st)
	}
}

func TestOAuthToken(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	post := func(id, secret, grant string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, s.AuthURL()+"/oauth/token/", strings.NewReader(url.Values{"grant_type": {grant}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if id != "" {
			req.SetBasicAuth(id, secret)
		}
		status, _, b := do(t, req)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("token body %q: %v", b, err)
		}
		return status, out
	}
	status, out := post(DefaultClientID, DefaultClientSecret, "client_credentials")
	tok, _ := out["access_token"].(string)
	if status != 200 || tok == "" || out["token_type"] != "Bearer" {
		t.Fatalf("token: %d %v", status, out)
	}
	// The token opens the API.
	p := s.Products()[0]
	if st, _, b := apiGet(t, s, tok, "/v2/order/", orderQuery(p, 0, 1, "False")); st != 200 {
		t.Fatalf("order with oauth token: %d %s", st, b)
	}
	for _, tc := range []struct{ id, secret, grant string }{
		{DefaultClientID, "wrong", "client_credentials"},
		{"", "", "client_credentials"},
		{DefaultClientID, DefaultClientSecret, "password"},
		{DefaultClientID, DefaultClientSecret, ""},
	} {
		if status, out := post(tc.id, tc.secret, tc.grant); status < 400 || out["error"] == nil {
			t.Errorf("%+v: status %d body %v, want an OAuth error", tc, status, out)
		}
	}
	// Not a form body (JSON), or the client authenticated in the body
	// (client_secret_post) instead of HTTP Basic.
	req, _ := http.NewRequest(http.MethodPost, s.AuthURL()+"/oauth/token/", strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(DefaultClientID, DefaultClientSecret)
	if status, _, b := do(t, req); status != 400 || !strings.Contains(string(b), "invalid_request") {
		t.Errorf("JSON body: %d %s, want 400 invalid_request", status, b)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret}}
	req, _ = http.NewRequest(http.MethodPost, s.AuthURL()+"/oauth/token/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, _, b := do(t, req); status < 400 || !strings.Contains(string(b), "invalid_client") {
		t.Errorf("client secret in the body: %d %s, want invalid_client", status, b)
	}
	if st := s.Stats(); st.TokenRequests != 7 || st.FailedTokenRequests != 6 {
		t.Errorf("stats %+v", st)
	}
}

func TestOrder(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	tok := token(t, s)
	p := s.Products()[0]
	all := s.Keys(0)
	if len(all) != p.Objects {
		t.Fatalf("Keys: %d, want %d", len(all), p.Objects)
	}
	desc := slices.Clone(all)
	slices.Reverse(desc)
	tests := []struct {
		offset, limit int
		asc           string
		want          []string
	}{
		{0, 20, "False", desc[:20]},
		{20, 20, "False", desc[20:]},
		{0, 5, "True", all[:5]},
		{3, 2, "true", all[3:5]},
		{24, 20, "True", all[24:]},
		{100, 20, "True", []string{}},
	}
	for _, tc := range tests {
		st, _, b := apiGet(t, s, tok, "/v2/order/", orderQuery(p, tc.offset, tc.limit, tc.asc))
		var got []string
		if err := json.Unmarshal(b, &got); st != 200 || err != nil {
			t.Fatalf("order %+v: %d %s", tc, st, b)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("order %+v: got %v, want %v", tc, got, tc.want)
		}
	}
	// No matching product → empty list.
	q := orderQuery(p, 0, 20, "False")
	q.Set("owner_id", "nobody")
	if st, _, b := apiGet(t, s, tok, "/v2/order/", q); st != 200 || string(b) != "[]" {
		t.Errorf("unknown owner: %d %s", st, b)
	}
	// Server-side checks.
	for param, bad := range map[string]string{"workspace": "other", "limit": "21", "offset": "-1", "ascending": "maybe", "owner_id": ""} {
		q := orderQuery(p, 0, 20, "False")
		q.Set(param, bad)
		st, _, b := apiGet(t, s, tok, "/v2/order/", q)
		if st != 400 || !strings.Contains(string(b), param) {
			t.Errorf("%s=%q: %d %s, want 400 naming it", param, bad, st, b)
		}
	}
	// No or bad token → 401.
	for _, tk := range []string{"", "garbage"} {
		if st, _, _ := apiGet(t, s, tk, "/v2/order/", q); st != 401 {
			t.Errorf("token %q: status %d, want 401", tk, st)
		}
	}
	s.ExpireTokens()
	if st, _, _ := apiGet(t, s, tok, "/v2/order/", orderQuery(p, 0, 20, "False")); st != 401 {
		t.Errorf("expired token: status %d, want 401", st)
	}
}

func sign(t *testing.T, s *Server, tok, key string) string {
	t.Helper()
	st, _, b := apiGet(t, s, tok, "/v2/sign/", url.Values{"key": {key}})
	var out struct{ URL string }
	if err := json.Unmarshal(b, &out); st != 200 || err != nil || out.URL == "" {
		t.Fatalf("sign %s: %d %s", key, st, b)
	}
	return out.URL
}

func TestSignAndDownload(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	tok := token(t, s)
	key := s.Keys(1)[2]
	u := sign(t, s, tok, key)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	st, _, b := do(t, req)
	want, err := s.Object(key)
	if err != nil || st != 200 || !bytes.Equal(b, want) {
		t.Fatalf("download: %d, %d bytes (want %d), err %v", st, len(b), len(want), err)
	}
	// The object is a Parquet file of the documented shape.
	rdr, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Products()[1]
	if rdr.NumRows() != int64(p.RowsPerObject) || rdr.NumRowGroups() < 2 {
		t.Errorf("rows %d groups %d", rdr.NumRows(), rdr.NumRowGroups())
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := fr.Schema()
	if err != nil || sc.NumFields() != Schema().NumFields() {
		t.Fatalf("schema read back %v (err %v), want %v", sc, err, Schema())
	}
	for i, f := range Schema().Fields() {
		got := sc.Field(i)
		if got.Name != f.Name || !arrow.TypeEqual(got.Type, f.Type) || got.Nullable != f.Nullable {
			t.Errorf("field %d read back as %v, want %v", i, got, f)
		}
	}

	// Tampered signature, expired signature, unknown key, unknown sign key.
	bad := strings.Replace(u, "Signature=", "Signature=00", 1)
	parsed, _ := url.Parse(u)
	q := parsed.Query()
	q.Set("Expires", strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10))
	parsed.RawQuery = q.Encode()
	for name, target := range map[string]string{"tampered": bad, "expiry changed": parsed.String(), "no signature": s.URL() + "/objects/" + key} {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		if st, _, b := do(t, req); st != 403 || !bytes.Contains(b, []byte("SignatureDoesNotMatch")) {
			t.Errorf("%s: %d %s, want 403", name, st, b)
		}
	}
	if st, _, _ := apiGet(t, s, tok, "/v2/sign/", url.Values{"key": {"nope.parquet"}}); st != 404 {
		t.Errorf("sign unknown key: %d, want 404", st)
	}
	if st, _, _ := apiGet(t, s, tok, "/v2/sign/", url.Values{}); st != 400 {
		t.Errorf("sign without key: %d, want 400", st)
	}
	if st, _, _ := apiGet(t, s, "", "/v2/sign/", url.Values{"key": {key}}); st != 401 {
		t.Errorf("sign without token: %d, want 401", st)
	}

	// A URL signed with a short TTL expires.
	s2 := start(t, Options{SignTTL: -time.Second})
	u2 := sign(t, s2, token(t, s2), s2.Keys(0)[0])
	req, _ = http.NewRequest(http.MethodGet, u2, nil)
	if st, _, b := do(t, req); st != 403 || !bytes.Contains(b, []byte("expired")) {
		t.Errorf("expired URL: %d %s", st, b)
	}
}

func TestDeterministicObjects(t *testing.T) {
	t.Parallel()
	a, b := New(Options{}), New(Options{})
	key := a.Keys(0)[7]
	x, err := a.Object(key)
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Object(key)
	if err != nil || !bytes.Equal(x, y) {
		t.Fatalf("two servers generated different bytes for %s (err %v)", key, err)
	}
	other, _ := a.Object(a.Keys(0)[8])
	if bytes.Equal(x, other) {
		t.Error("two objects have identical bytes")
	}
	if _, err := a.Object("missing"); err == nil {
		t.Error("Object(missing): no error")
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	tok := token(t, s)
	key := s.Keys(0)[0]
	want, _ := s.Object(key)
	get := func() (int, http.Header, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, sign(t, s, tok, key), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b, err
	}

	s.InjectFault(key, Fault{Status: 503, Times: 1})
	if st, _, _, _ := get(); st != 503 {
		t.Errorf("503 fault: %d", st)
	}
	if st, _, b, _ := get(); st != 200 || !bytes.Equal(b, want) {
		t.Errorf("after Times:1 fault: %d", st)
	}

	s.InjectFault("/objects/", Fault{Status: 429, RetryAfter: "2", Times: 1})
	if st, h, _, _ := get(); st != 429 || h.Get("Retry-After") != "2" {
		t.Errorf("429 fault: %d %v", st, h)
	}

	s.InjectFault(key, Fault{Truncate: true, Times: 1})
	if _, _, _, err := get(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncate fault: err %v, want unexpected EOF", err)
	}

	s.InjectFault(key, Fault{ShortBody: true, Times: 1})
	if st, _, b, err := get(); st != 200 || err != nil || len(b) != len(want)/2 {
		t.Errorf("short body fault: %d %d bytes err %v", st, len(b), err)
	}

	s.InjectFault(key, Fault{SlowBody: 20 * time.Millisecond, Times: 1})
	begin := time.Now()
	if st, _, b, _ := get(); st != 200 || !bytes.Equal(b, want) || time.Since(begin) < 7*20*time.Millisecond {
		t.Errorf("slow body fault: %d, %v", st, time.Since(begin))
	}

	s.InjectFault(key, Fault{ExpiredSignature: true, Times: 1})
	if st, _, b, _ := get(); st != 403 || !bytes.Contains(b, []byte("expired")) {
		t.Errorf("expired signature fault: %d %s", st, b)
	}

	s.InjectFault("/api/v2/sign/", Fault{Status: 200, Body: `{"url": ""}`, Times: 1})
	if st, _, b := apiGet(t, s, tok, "/v2/sign/", url.Values{"key": {key}}); st != 200 || string(b) != `{"url": ""}` {
		t.Errorf("body fault: %d %s", st, b)
	}

	// Times 0 applies until cleared.
	s.InjectFault("/api/", Fault{Status: 500})
	for range 3 {
		if st, _, _ := apiGet(t, s, tok, "/v2/sign/", url.Values{"key": {key}}); st != 500 {
			t.Errorf("permanent fault: %d", st)
		}
	}
	s.ClearFaults()
	if st, _, _ := apiGet(t, s, tok, "/v2/sign/", url.Values{"key": {key}}); st != 200 {
		t.Errorf("after ClearFaults: %d", st)
	}

	// Delay honours the client's cancellation.
	s.InjectFault("/api/", Fault{Delay: time.Hour, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.APIURL()+"/v2/sign/?key="+key, nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("delayed request did not time out")
	}
	if st := s.Stats(); st.Downloads[key] < 7 {
		t.Errorf("downloads of %s: %d", key, st.Downloads[key])
	}
}

func TestInvalidCatalog(t *testing.T) {
	t.Parallel()
	for _, p := range []Product{
		{Name: "x", Workspace: "apps", OwnerID: "o"},
		{GroupName: "g", Name: "x", Workspace: "apps", OwnerID: "o", Objects: -1},
		{GroupName: "g", Name: "x", Workspace: "apps", OwnerID: "o", RowGroupRows: -2},
	} {
		s := New(Options{Products: []Product{p}})
		if err := s.Start(); err == nil {
			s.Close()
			t.Errorf("Start accepted %+v", p)
		}
	}
}
