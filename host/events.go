package host

import (
	"encoding/json"
	"net/http"

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
func (h *Host) eventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeEvent(w, http.StatusMethodNotAllowed, badProtocolEvent(r.Method+" is not allowed: POST one event"))
			return
		}
		body, err := readBody(w, r, h.cfg.MaxBodyBytes)
		if err != nil {
			writeEvent(w, http.StatusRequestEntityTooLarge, badProtocolEvent(err.Error()))
			return
		}
		raw, _ := json.Marshal(string(body))
		env := &envelope.Request{Request: json.RawMessage(`{"raw":` + string(raw) + `}`)}
		res, f := h.router.Invoke(r.Context(), &router.Request{
			AppID: EventsAppID, Capability: "process_event", Envelope: env, RequestID: r.Header.Get("X-Request-Id"),
		})
		if f != nil {
			// The gateway itself failed (plugin down, deadline): that is
			// not an event answer, so it gets the host's error envelope.
			httpapi.WriteFailure(w, f)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(res.Response, '\n'))
	})
}

// badProtocolEvent answers a body the gateway cannot even forward.
func badProtocolEvent(reason string) []byte {
	ev, err := eventsprotocol.ErrorFor(&eventsprotocol.Event{Name: eventsprotocol.NameBadProtocol, Version: 1},
		eventsprotocol.ErrorBadProtocol, eventsprotocol.CodeInvalidCommunicationProtocol,
		map[string]any{"fields": map[string]string{"body": reason}})
	if err != nil {
		return []byte(`{}`)
	}
	b, _ := json.Marshal(ev)
	return b
}

func writeEvent(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
