// Package eventsprotocol speaks the GuiaBolso events-protocol: JSON events
// POSTed over HTTP and answered with a response event whose name says how it
// went. Any plugin (or the host) can use it to send events (Client) or to
// serve them (Registry, Processor).
//
// # Wire format
//
// An event is {"name", "version", "id", "flowId", "payload", "identity",
// "auth", "metadata"} (see Event). Request names match NamePattern. The
// answer to "get:event:example" is named
//
//   - "get:event:example:response" on success (ResponseFor),
//   - "get:event:example:redirect" with payload {"url", "queryParameters"}
//     (RedirectFor),
//   - "get:event:example:<errorType>" with payload {"code", "parameters"}
//     (ErrorFor; the types are the ErrorType constants),
//
// and copies version, id, flowId, identity, auth and metadata from the
// request: only name and payload change. HTTP status is 200 for every
// answer, error events included.
//
// # Serving
//
// Handlers are registered per (name, version) in a Registry, either typed
// (Register, Typed: the payload is validated against the JSON Schema of a Go
// type and decoded into it) or raw (HandlerFunc). A Resolver serves names
// computed at run time. A Processor turns a raw body into the answer, and is
// itself the http.Handler of the protocol. See Processor for the answer to
// each failure.
//
// # Differences from the originals
//
//   - Unknown name or version: "<name>:notFound", code EVENT_NOT_FOUND (the
//     Python original). The Kotlin original's "eventNotFound" loses the
//     request name and is outside the protocol's error types, so a client
//     cannot classify it with the others.
//   - id and flowId default to a fresh UUID per event. The Python original's
//     defaults are evaluated once at import time, so every event built
//     without ids shares the same ones.
//   - Client timeout defaults to 15 s (the Kotlin original). The Python
//     original passes its default 60000, meant as milliseconds, to requests
//     as seconds.
//   - A Python server answering an unparseable body crashes building the
//     error (it passes None as the request); this package answers
//     "badProtocol" with the bad fields.
//   - Responses are read leniently (like the Python client): name, version
//     and payload are required, id, flowId, identity, auth and metadata may
//     be absent. The Kotlin client's strict validator requires all eight.
package eventsprotocol
