package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/connector-host/connector-host/internal/wire"
)

type inboundSettingsKey struct{}

// InboundSettings returns the connector's settings (JSON) inside an Inbound
// handler; the host passes the connector's configured settings.
func InboundSettings(r *http.Request) json.RawMessage {
	s, _ := r.Context().Value(inboundSettingsKey{}).(json.RawMessage)
	return s
}

// maxInboundResponse bounds what an Inbound handler may answer.
const maxInboundResponse = 32 << 20

// serveInbound runs the Inbound handler on a forwarded request.
func (i *Integration) serveInbound(ctx context.Context, req *wire.InboundRequest) *wire.InboundResponse {
	if i.Inbound == nil {
		return inboundError(http.StatusNotFound, "not_found", i.AppID+" serves no inbound routes")
	}
	target := req.Path
	if req.RawQuery != "" {
		target += "?" + req.RawQuery
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return inboundError(http.StatusBadRequest, "bad_request", "malformed inbound request path: "+err.Error())
	}
	ctx = context.WithValue(ctx, inboundSettingsKey{}, req.Settings)
	hr, err := http.NewRequestWithContext(ctx, req.Method, target, bytes.NewReader(req.Body))
	if err != nil {
		return inboundError(http.StatusBadRequest, "bad_request", "malformed inbound request: "+err.Error())
	}
	hr.RequestURI = u.RequestURI()
	hr.Header = http.Header(req.Header)
	if hr.Header == nil {
		hr.Header = http.Header{}
	}
	hr.ContentLength = int64(len(req.Body))
	rec := &inboundRecorder{header: http.Header{}}
	func() {
		defer func() {
			if r := recover(); r != nil {
				i.logger().Error("inbound handler panicked", "path", req.Path, "panic", fmt.Sprint(r))
				rec.reset()
				rec.WriteHeader(http.StatusInternalServerError)
				_, _ = rec.Write([]byte(`{"error":"internal error"}`))
			}
		}()
		i.Inbound.ServeHTTP(rec, hr)
	}()
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &wire.InboundResponse{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
}

func inboundError(status int, code, msg string) *wire.InboundResponse {
	b, _ := json.Marshal(map[string]string{"error": code, "message": msg})
	return &wire.InboundResponse{Status: status, Header: map[string][]string{"Content-Type": {"application/json"}}, Body: b}
}

// inboundRecorder is the http.ResponseWriter an Inbound handler writes to.
type inboundRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *inboundRecorder) Header() http.Header { return r.header }

func (r *inboundRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *inboundRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(p) > maxInboundResponse {
		return 0, fmt.Errorf("inbound response larger than %d bytes", maxInboundResponse)
	}
	return r.body.Write(p)
}

func (r *inboundRecorder) reset() {
	r.header = http.Header{"Content-Type": {"application/json"}}
	r.status = 0
	r.body.Reset()
}
