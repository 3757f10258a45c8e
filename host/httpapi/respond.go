package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// writeFailure writes an error envelope with the failure's status.
func writeFailure(w http.ResponseWriter, f *router.Failure) {
	status := f.Status()
	body := envelope.MarshalError(envelope.NewErrorBody(f.AppID, f.Err, status))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) //nolint:gosec // G705: a JSON envelope served as application/json, not HTML
}

// writeHostError writes an error raised by the host itself.
func (s *Server) writeHostError(w http.ResponseWriter, code sdk.Code, raisedIn, msg string) {
	writeFailure(w, &router.Failure{AppID: router.HostAppID, Err: &wire.Error{Code: string(code), Message: msg, RaisedBy: "host", RaisedIn: raisedIn}})
}

// WriteFailure writes f as an error envelope (for routes mounted by other
// host packages).
func WriteFailure(w http.ResponseWriter, f *router.Failure) { writeFailure(w, f) }

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
