package host

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/connector-host/connector-host/host/httpapi"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

// EventsAppID is the connector that answers POST /events.
const EventsAppID = "events-protocol"

// eventsHandler serves the events-protocol gateway: the body (one event)
// goes to the events-protocol plugin's process_event, whose answer event is
// written back with HTTP 200, as the protocol wants even for error events.
// Events named "<app_id with - as _>:<capability>" v1 reach every connector
// through the plugin's host callback (see plugins/eventsprotocol).
//
// What is refused before an event is read is answered with a badProtocol
// event too: another method (405, Allow: POST) and a body over
// max_body_bytes (413). When the gateway itself fails (no events-protocol
// plugin, the plugin down, the call's deadline) the answer is the host's
// error envelope, as it is not an event's answer.
func (h *Host) eventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeEvent(w, http.StatusMethodNotAllowed, eventsprotocol.BadProtocolFor(map[string]string{
				"method": r.Method + " is not allowed: POST one event"}))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
		if err != nil {
			reason := "cannot be read"
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				reason = "must not exceed " + strconv.FormatInt(h.cfg.MaxBodyBytes, 10) + " bytes (max_body_bytes)"
			}
			writeEvent(w, http.StatusRequestEntityTooLarge, eventsprotocol.BadProtocolFor(map[string]string{"body": reason}))
			return
		}
		// The body goes to the plugin as text: what is not even JSON still
		// gets the protocol's badProtocol answer from the processor.
		raw, _ := json.Marshal(string(body)) // a string always marshals
		env := &envelope.Request{Request: json.RawMessage(`{"raw":` + string(raw) + `}`)}
		id := eventsRequestID(r)
		w.Header().Set("X-Request-Id", id)
		res, f := h.router.Invoke(r.Context(), &router.Request{
			AppID: EventsAppID, Capability: "process_event", Envelope: env, RequestID: id,
		})
		if f != nil {
			httpapi.WriteFailure(w, f)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(res.Response, '\n'))
	})
}

// eventsRequestID is the caller's X-Request-Id when it is a sane one (at
// most 64 printable ASCII characters, as the HTTP API accepts), else a
// fresh "ev-<uuid>", so the plugin's log lines of the call carry an id.
func eventsRequestID(r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 64 {
		return "ev-" + uuid.NewString()
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return "ev-" + uuid.NewString()
		}
	}
	return id
}

func writeEvent(w http.ResponseWriter, status int, ev *eventsprotocol.Event) {
	body, err := json.Marshal(ev)
	if err != nil {
		// Unreachable: the events written here hold valid JSON only.
		body = []byte(`{}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
