package host

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/connector-host/connector-host/host/httpapi"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// inboundPrefix is where plugins' inbound routes are served.
const inboundPrefix = "/v1/inbound/"

// hopHeaders are not forwarded to plugins (RFC 9110 §7.6.1).
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Proxy-Authorization": true,
}

// inboundHandler serves /v1/inbound/{app_id}/... by forwarding each request
// to the plugin that declared the route. These routes are public: upstream
// systems call them with their own credentials, which the plugin checks.
func (h *Host) inboundHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appID := r.PathValue("app_id")
		escaped := strings.TrimPrefix(r.URL.EscapedPath(), inboundPrefix+appID)
		decoded := strings.TrimPrefix(r.URL.Path, inboundPrefix+appID)
		if escaped == "" {
			escaped, decoded = "/", "/"
		}
		body, err := readBody(w, r, h.cfg.MaxBodyBytes)
		if err != nil {
			httpapi.WriteFailure(w, &router.Failure{AppID: appID, Err: &wire.Error{Code: string(sdk.BadRequest), Message: err.Error(), RaisedBy: "host", RaisedIn: "host.inbound"}})
			return
		}
		header := make(map[string][]string, len(r.Header))
		for k, v := range r.Header {
			if !hopHeaders[k] {
				header[k] = v
			}
		}
		req := &wire.InboundRequest{Method: r.Method, Path: escaped, RawQuery: r.URL.RawQuery, Header: header, Body: body}
		res, f := h.router.HandleInbound(r.Context(), appID, req, decoded)
		if f != nil {
			httpapi.WriteFailure(w, f)
			return
		}
		for k, v := range res.Header {
			if !hopHeaders[http.CanonicalHeaderKey(k)] {
				w.Header()[http.CanonicalHeaderKey(k)] = v
			}
		}
		status := res.Status
		if status < 100 || status > 999 {
			status = http.StatusBadGateway
		}
		w.WriteHeader(status)
		_, _ = w.Write(res.Body) //nolint:gosec // G705: the plugin's answer to its upstream caller, with the plugin's own Content-Type
	})
}

// readBody reads a request body up to limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errors.New("body: larger than the request size limit")
	}
	if err != nil {
		return nil, errors.New("body: " + err.Error())
	}
	return b, nil
}
