// Package inbound serves the REST API the DSYNC platform calls on a
// connector: the data layout and one endpoint per entity, backed by the
// records store. It is a plain http.Handler; the host mounts it under
// /v1/inbound/dsync/ and passes the path below that root (or the full path
// when Config.Prefix is set).
//
// API (paths relative to the inbound root; every request must carry
// Auth-Token equal to the inbound API key, compared in constant time, else
// 401):
//
//	GET    /datalayout              → data = {"data_layout":[...]}
//	GET    {endpoint}?limit=&cursor= → data = {"records":[...],"next_cursor":""}
//	GET    {endpoint}/{id}           → data = the record   (also {endpoint}?id={id})
//	POST   {endpoint}                → create; data = the stored record
//	PUT    {endpoint}/{id}           → replace; data = the stored record
//	                                   (also {endpoint}?id= or {endpoint} with the id in the body)
//	DELETE {endpoint}/{id}           → delete; data = the deleted record
//	                                   (also {endpoint}?id= or an Entity-Id header)
//
// {endpoint} is the path of the entity's endpoint_url (an absolute URL
// contributes its path) and {id} the path-escaped primary key value. limit
// is 1..1000 (default 100); next_cursor is "" on the last page (see package
// store). Every answer is {"status":N,"message":"...","detail":"...",
// "data":...}: message is "OK" or the HTTP status text, detail says what went
// wrong, and for invalid records data is {"violations":[{"path","reason"}]}
// naming each offending field. Status codes: 400 invalid record, id, limit
// or cursor; 401 bad key; 404 unknown path or record; 405 wrong method; 409
// create of an existing id; 413 body too large; 415 body not JSON.
package inbound

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/connector-host/connector-host/plugins/dsync/internal/layout"
	"github.com/connector-host/connector-host/plugins/dsync/internal/store"
	"github.com/connector-host/connector-host/sdk"
)

// DataLayoutPath is the path of the data layout endpoint.
const DataLayoutPath = "/datalayout"

// DefaultMaxBody bounds request bodies when Config.MaxBodyBytes is 0.
const DefaultMaxBody = 1 << 20

// Config configures the handler.
type Config struct {
	// Layout is the connector's data layout. Required.
	Layout *layout.Layout
	// Store holds the records; it must have been opened with Layout.
	// Required.
	Store *store.Store
	// APIKey is the inbound API key the platform sends in Auth-Token.
	// Required.
	APIKey string
	// Prefix, when set (e.g. "/v1/inbound/dsync"), is stripped from request
	// paths; requests outside it get 404.
	Prefix string
	// MaxBodyBytes bounds request bodies (default DefaultMaxBody).
	MaxBodyBytes int64
}

type handler struct {
	cfg        Config
	keySum     [32]byte
	layoutJSON []byte
	entities   []route
}

// route is one entity's endpoint.
type route struct {
	entity  *layout.Entity
	path    string // unescaped, no trailing slash
	escaped string // escaped form, for item matching
}

// New returns the inbound API handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Layout == nil || cfg.Store == nil {
		return nil, errors.New("inbound: Layout and Store are required")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("inbound: inbound_api_key is required; the inbound API is never served without authentication")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBody
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	lj, err := cfg.Layout.JSON()
	if err != nil {
		return nil, fmt.Errorf("inbound: %w", err)
	}
	h := &handler{cfg: cfg, keySum: sha256.Sum256([]byte(cfg.APIKey)), layoutJSON: lj}
	var v []layout.Violation
	seen := map[string]int{}
	for i := range cfg.Layout.DataLayout {
		e := &cfg.Layout.DataLayout[i]
		p := fmt.Sprintf("data_layout[%d].endpoint_url", i)
		if _, ok := cfg.Store.Schema(e.EntityToken); !ok {
			v = append(v, layout.Violation{Path: fmt.Sprintf("data_layout[%d].entity_token", i), Reason: "entity is not in the store's layout"})
			continue
		}
		ep, err := EndpointPath(e.EndpointURL)
		if err != nil {
			v = append(v, layout.Violation{Path: p, Reason: err.Error()})
			continue
		}
		if j, dup := seen[ep]; dup {
			v = append(v, layout.Violation{Path: p, Reason: fmt.Sprintf("path %q is already used by data_layout[%d]", ep, j)})
			continue
		}
		seen[ep] = i
		h.entities = append(h.entities, route{entity: e, path: ep, escaped: (&url.URL{Path: ep}).EscapedPath()})
	}
	if len(v) > 0 {
		return nil, fmt.Errorf("inbound: %w", &layout.ValidationError{Subject: "data layout", Violations: v})
	}
	return h, nil
}

// EndpointPath returns the path an entity's endpoint_url is served at: the
// URL's path without a trailing slash. It must start with "/" and must not
// be the data layout path.
func EndpointPath(endpointURL string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(endpointURL))
	if err != nil {
		return "", fmt.Errorf("%q is not a URL or path: %w", endpointURL, err)
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("%q must be a path starting with / (or an absolute URL)", endpointURL)
	case p == DataLayoutPath:
		return "", fmt.Errorf("%q is reserved for the data layout", endpointURL)
	}
	return p, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sum := sha256.Sum256([]byte(r.Header.Get("Auth-Token")))
	if subtle.ConstantTimeCompare(sum[:], h.keySum[:]) != 1 {
		writeError(w, http.StatusUnauthorized, "a valid Auth-Token header is required", nil)
		return
	}
	path, escaped := r.URL.Path, r.URL.EscapedPath()
	if h.cfg.Prefix != "" {
		if path != h.cfg.Prefix && !strings.HasPrefix(path, h.cfg.Prefix+"/") {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no inbound endpoint at %q", path), nil)
			return
		}
		path = strings.TrimPrefix(path, h.cfg.Prefix)
		escaped = strings.TrimPrefix(escaped, (&url.URL{Path: h.cfg.Prefix}).EscapedPath())
	}
	if path == DataLayoutPath || path == DataLayoutPath+"/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r, "GET")
			return
		}
		writeRaw(w, http.StatusOK, h.layoutJSON)
		return
	}
	for i := range h.entities {
		rt := &h.entities[i]
		if path == rt.path || path == rt.path+"/" {
			h.serveCollection(w, r, rt)
			return
		}
		if rest, ok := strings.CutPrefix(escaped, rt.escaped+"/"); ok && rest != "" && !strings.Contains(rest, "/") {
			id, err := url.PathUnescape(rest)
			if err != nil {
				writeError(w, http.StatusBadRequest, "record id in the path is not valid escaping", nil)
				return
			}
			h.serveItem(w, r, rt, id)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no inbound endpoint at %q", path), nil)
}

func (h *handler) serveCollection(w http.ResponseWriter, r *http.Request, rt *route) {
	q := r.URL.Query()
	id, hasID := q.Get("id"), q.Has("id")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if hasID {
			h.serveItem(w, r, rt, id)
			return
		}
		limit := 0
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: %q is not an integer", s), nil)
				return
			}
			if n < 1 {
				// 0 means the default only when limit is absent.
				writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: must be between 1 and %d, got %d", store.MaxLimit, n), nil)
				return
			}
			limit = n
		}
		page, err := h.cfg.Store.List(r.Context(), rt.entity.EntityToken, limit, q.Get("cursor"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeData(w, page)
	case http.MethodPost:
		body, ok := h.readBody(w, r)
		if !ok {
			return
		}
		rec, err := h.cfg.Store.Create(r.Context(), rt.entity.EntityToken, body)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeData(w, rec.Data)
	case http.MethodPut:
		h.update(w, r, rt, id)
	case http.MethodDelete:
		if !hasID {
			id = r.Header.Get("Entity-Id")
		}
		if id == "" {
			writeError(w, http.StatusBadRequest, "id: name the record to delete in the path, ?id= or an Entity-Id header", nil)
			return
		}
		h.delete(w, r, rt, id)
	default:
		methodNotAllowed(w, r, "GET, POST, PUT, DELETE")
	}
}

func (h *handler) serveItem(w http.ResponseWriter, r *http.Request, rt *route, id string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rec, err := h.cfg.Store.Get(r.Context(), rt.entity.EntityToken, id)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeData(w, rec)
	case http.MethodPut:
		if id == "" {
			writeError(w, http.StatusBadRequest, "id: must not be empty", nil)
			return
		}
		h.update(w, r, rt, id)
	case http.MethodDelete:
		h.delete(w, r, rt, id)
	default:
		methodNotAllowed(w, r, "GET, PUT, DELETE")
	}
}

func (h *handler) update(w http.ResponseWriter, r *http.Request, rt *route, id string) {
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	rec, err := h.cfg.Store.Update(r.Context(), rt.entity.EntityToken, id, body)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeData(w, rec.Data)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request, rt *route, id string) {
	rec, err := h.cfg.Store.Delete(r.Context(), rt.entity.EntityToken, id)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeData(w, rec)
}

// readBody reads a JSON request body within the size limit.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type must be application/json, got %q", ct), nil)
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit), nil)
		} else {
			writeError(w, http.StatusBadRequest, "cannot read body", nil)
		}
		return nil, false
	}
	return body, true
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed here", r.Method), nil)
}

// envelope is the answer format DSYNC expects from a connector.
type envelope struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Detail  string `json:"detail"`
	Data    any    `json:"data"`
}

func writeData(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, envelope{Status: http.StatusOK, Message: "OK", Data: data})
}

// writeErr answers with the status of an *sdk.Error's code; other errors
// are internal and their text is not exposed.
func writeErr(w http.ResponseWriter, err error) {
	var se *sdk.Error
	if !errors.As(err, &se) {
		writeError(w, http.StatusInternalServerError, "internal error", nil)
		return
	}
	status := se.Code.HTTPStatus()
	if status >= 500 {
		writeError(w, status, "internal error", nil)
		return
	}
	var data any
	var ve *layout.ValidationError
	if errors.As(err, &ve) {
		data = map[string]any{"violations": ve.Violations}
	}
	writeError(w, status, se.Message, data)
}

func writeError(w http.ResponseWriter, status int, detail string, data any) {
	writeJSON(w, status, envelope{Status: status, Message: http.StatusText(status), Detail: detail, Data: data})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"status":500,"message":"Internal Server Error","detail":"encoding failed","data":null}`)
	}
	writeRawStatus(w, status, b)
}

// writeRaw writes a success envelope around pre-encoded data.
func writeRaw(w http.ResponseWriter, status int, data []byte) {
	b := make([]byte, 0, len(data)+64)
	b = append(b, `{"status":200,"message":"OK","detail":"","data":`...)
	b = append(b, data...)
	b = append(b, '}')
	writeRawStatus(w, status, b)
}

func writeRawStatus(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
