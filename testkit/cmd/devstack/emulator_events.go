package main

import (
	"context"
	"encoding/json"
	"fmt"

	eventsemu "github.com/connector-host/connector-host/testkit/emulators/events"
)

// The local events-protocol service (testkit/emulators/events) for the
// events-protocol connector's send_event: an HTTP server on
// 127.0.0.1:8091 (a free port when taken) answering the seed's
// get:event:example and the emulator's events (echo, redirect, each error
// type, slow, a non-2xx status, invalid JSON).
//
// The connector's block in the generated configuration replaces the
// host's default one, so it keeps the default callbacks ("*"): the events
// gateway (POST /events) reaches every connector, as without a config.

func init() {
	emulators = append(emulators, emulator{name: "events-protocol", appID: "events-protocol", start: startEvents})
}

func startEvents(_ context.Context, _ string) (started, error) {
	emu := eventsemu.New()
	emu.Addr = "127.0.0.1:8091"
	if err := emu.Start(); err != nil {
		emu = eventsemu.New()
		if err := emu.Start(); err != nil {
			return started{}, err
		}
	}
	examples, err := eventsExamples(emu.URL())
	if err != nil {
		_ = emu.Close()
		return started{}, err
	}
	return started{
		callbacks: []string{"*"},
		about:     fmt.Sprintf("%s (get:event:example, %s, %s, %s, %s ... v1)", emu.URL(), eventsemu.NameEcho, eventsemu.NameFail, eventsemu.NameSlow, eventsemu.NameHTTPStatus),
		examples:  examples,
		stop:      func() { _ = emu.Close() },
	}, nil
}

// eventsExamples are the banner's curl commands: send_event to the local
// service (a response, then an error event returned as data), the same
// event POSTed to the emulator itself, and the host's events gateway
// running reference/echo as the event reference:echo.
func eventsExamples(url string) ([]string, error) {
	var out []string
	for _, req := range []map[string]any{
		{"url": url, "name": "get:event:example", "version": 1, "payload": map[string]any{"example": "hello"}},
		{"url": url, "name": eventsemu.NameFail, "version": 1, "payload": map[string]any{"type": "forbidden", "code": "NOT_YOURS"}},
	} {
		b, err := json.Marshal(map[string]any{"request": req})
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("curl -s {URL}/v1/connectors/events-protocol/send_event -d %s; echo", shellQuote(string(b))))
	}
	direct, err := json.Marshal(map[string]any{"name": "get:event:example", "version": 1, "payload": map[string]any{"example": "direct"}})
	if err != nil {
		return nil, err
	}
	gateway, err := json.Marshal(map[string]any{"name": "reference:echo", "version": 1, "payload": map[string]any{"request": map[string]any{"message": "via events"}}})
	if err != nil {
		return nil, err
	}
	out = append(out,
		fmt.Sprintf("curl -s %s -d %s; echo   # the local service itself", url, shellQuote(string(direct))),
		fmt.Sprintf("curl -s {URL}/events -d %s; echo   # the events gateway: any connector's capability as an event", shellQuote(string(gateway))),
	)
	return out, nil
}
