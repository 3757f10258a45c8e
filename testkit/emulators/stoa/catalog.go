package stoaemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// orderParams are the query parameters of GET {api}/v2/order/, in the order
// PROTOCOLS.md lists them.
var orderParams = []string{"product_group_name", "product_name", "workspace", "owner_id", "version", "offset", "limit", "ascending"}

// handleOrder serves GET {api}/v2/order/: the keys of the matching product,
// newest first unless ascending=True, paged by offset/limit; [] when nothing
// matches.
func (s *Server) handleOrder(w http.ResponseWriter, r *http.Request) {
	s.count(func(st *Stats) { st.Orders++; st.LastOrderQuery = r.URL.RawQuery })
	f, ok := s.startFault(w, r, kindOther, "")
	if !ok || !s.requireToken(w, r, f) {
		return
	}
	q := r.URL.Query()
	errs := map[string][]string{}
	for _, p := range orderParams {
		if q.Get(p) == "" {
			errs[p] = []string{"This field is required."}
		}
	}
	offset, err := strconv.Atoi(q.Get("offset"))
	if _, missing := errs["offset"]; !missing && (err != nil || offset < 0) {
		errs["offset"] = []string{"Ensure this value is a non-negative integer."}
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if _, missing := errs["limit"]; !missing && (err != nil || limit < 1 || limit > 20) {
		errs["limit"] = []string{"Ensure this value is between 1 and 20."}
	}
	var ascending bool
	switch q.Get("ascending") {
	case "True", "true":
		ascending = true
	case "False", "false", "":
	default:
		errs["ascending"] = []string{"Must be a valid boolean."}
	}
	if ws := q.Get("workspace"); ws != "" && ws != "apps" && ws != "cart" {
		errs["workspace"] = []string{`"` + ws + `" is not a valid choice.`}
	}
	if len(errs) > 0 {
		s.respond(w, r, jsonResponse(http.StatusBadRequest, errs), f)
		return
	}
	keys := []string{}
	for i, p := range s.opts.Products {
		if p.GroupName == q.Get("product_group_name") && p.Name == q.Get("product_name") &&
			p.Workspace == q.Get("workspace") && p.OwnerID == q.Get("owner_id") && p.Version == q.Get("version") {
			keys = slices.Clone(s.keys[i])
			break
		}
	}
	if !ascending {
		slices.Reverse(keys)
	}
	page := []string{}
	if offset < len(keys) {
		page = keys[offset:min(offset+limit, len(keys))]
	}
	s.respond(w, r, jsonResponse(http.StatusOK, page), f)
}

// handleSign serves GET {api}/v2/sign/?key=: {"url": presigned URL}.
func (s *Server) handleSign(w http.ResponseWriter, r *http.Request) {
	s.count(func(st *Stats) { st.Signs++ })
	key := r.URL.Query().Get("key")
	f, ok := s.startFault(w, r, kindSign, key)
	if !ok || !s.requireToken(w, r, f) {
		return
	}
	if key == "" {
		s.respond(w, r, jsonResponse(http.StatusBadRequest, map[string]any{"key": []string{"This field is required."}}), f)
		return
	}
	if _, ok := s.objects[key]; !ok {
		s.respond(w, r, jsonResponse(http.StatusNotFound, map[string]any{"detail": "Not found."}), f)
		return
	}
	expires := time.Now().Add(s.opts.SignTTL)
	if f != nil && f.ExpiredSignature {
		expires = time.Now().Add(-time.Minute)
	}
	s.respond(w, r, jsonResponse(http.StatusOK, map[string]any{"url": s.presign(key, expires.Unix())}), f)
}

// presign returns the object URL for key valid until the unix time expires.
func (s *Server) presign(key string, expires int64) string {
	q := url.Values{}
	q.Set("Expires", strconv.FormatInt(expires, 10))
	q.Set("Signature", s.signature(key, expires))
	return s.url + "/objects/" + url.PathEscape(key) + "?" + q.Encode()
}

func (s *Server) signature(key string, expires int64) string {
	m := hmac.New(sha256.New, s.opts.SigningKey)
	m.Write([]byte(key))
	m.Write([]byte{'\n'})
	m.Write([]byte(strconv.FormatInt(expires, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// s3Error is the body of a rejected object download, shaped like S3's.
func s3Error(status int, code, message string) response {
	h := http.Header{}
	h.Set("Content-Type", "application/xml")
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>` + message + `</Message></Error>`
	return response{status: status, header: h, body: []byte(body)}
}

// handleObject serves a presigned download: 403 for a missing, bad or
// expired signature, 404 for an unknown key, else the Parquet bytes.
func (s *Server) handleObject(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	s.objectStarted(key)
	defer s.objectDone()
	f, ok := s.startFault(w, r, kindObject, key)
	if !ok {
		return
	}
	q := r.URL.Query()
	expires, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
	sig, sigErr := hex.DecodeString(q.Get("Signature"))
	want, _ := hex.DecodeString(s.signature(key, expires))
	switch {
	case err != nil || sigErr != nil || !hmac.Equal(sig, want):
		s.respond(w, r, s3Error(http.StatusForbidden, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided."), f)
		return
	case time.Now().Unix() > expires:
		s.respond(w, r, s3Error(http.StatusForbidden, "AccessDenied", "Request has expired"), f)
		return
	}
	if _, ok := s.objects[key]; !ok {
		s.respond(w, r, s3Error(http.StatusNotFound, "NoSuchKey", "The specified key does not exist."), f)
		return
	}
	b, err := s.Object(key)
	if err != nil {
		s.respond(w, r, s3Error(http.StatusInternalServerError, "InternalError", "object generation failed"), f)
		return
	}
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+key+`"`)
	s.respond(w, r, response{status: http.StatusOK, header: h, body: b}, f)
}
