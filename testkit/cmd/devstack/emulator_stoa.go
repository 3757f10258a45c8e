package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

// The local Stoa (testkit/emulators/stoa) behind the stoa connector: the
// plugin's settings point its REST login and API at the emulator, and the
// operator override of the declared OAuth token URL points the host's
// OAuth module at the emulator's token endpoint, so both auth modes work
// in `make run`.

// The dev stack's Stoa accounts. They are fixed (not random per run) so
// that a credential stored in data/dev/host keeps working after a restart:
// the host gets a new token from the new emulator with the stored client
// id and secret. They open nothing but this local emulator.
const (
	devStoaEmail        = "analyst@stoa.local"
	devStoaPassword     = "stoa-dev-password" //nolint:gosec // fixed on purpose: it opens only the local emulator
	devStoaClientID     = "stoa-dev-client"
	devStoaClientSecret = "stoa-dev-client-secret" //nolint:gosec // fixed on purpose: it opens only the local emulator
	devStoaCredential   = "stoa-dev"
)

func init() {
	emulators = append(emulators, emulator{name: "Stoa", appID: "stoa", start: startStoa})
}

// startStoa runs the Stoa emulator with its default catalog (the example
// product of the Python client's documentation: 25 objects in workspace
// apps, 3 in cart).
func startStoa(_ context.Context, _ string) (started, error) {
	srv := stoaemu.New(stoaemu.Options{
		Addr:         "127.0.0.1:0",
		Email:        devStoaEmail,
		Password:     devStoaPassword,
		ClientID:     devStoaClientID,
		ClientSecret: devStoaClientSecret,
	})
	if err := srv.Start(); err != nil {
		return started{}, err
	}
	examples, err := stoaExamples(srv.Keys(0))
	if err != nil {
		srv.Close()
		return started{}, err
	}
	return started{
		settings: map[string]any{"auth_base_url": srv.AuthURL(), "api_base_url": srv.APIURL()},
		oauth:    map[string]string{"token_url": srv.AuthURL() + "/oauth/token/"},
		about: fmt.Sprintf("%s (REST login %s / %s; OAuth2 client %s / %s; product exampleGroup/exampleProduct, owner owner123)",
			srv.URL(), devStoaEmail, devStoaPassword, devStoaClientID, devStoaClientSecret),
		examples: examples,
		stop:     srv.Close,
	}, nil
}

// stoaExamples are the banner's curl commands: REST login, order, the
// host-kept OAuth2 credential, then sign and fetch (NDJSON) with it.
func stoaExamples(keys []string) ([]string, error) {
	basic := map[string]any{"basic": map[string]any{"username": devStoaEmail, "password": devStoaPassword}}
	order := map[string]any{"product_group_name": "exampleGroup", "product_name": "exampleProduct", "workspace": "apps", "owner_id": "owner123", "limit": 3}
	ids := keys[len(keys)-2:] // the newest two, as a descending order returns them
	calls := []struct {
		capability string
		envelope   map[string]any
		// stream: NDJSON, shown a few lines at a time.
		stream bool
		note   string
	}{
		{"validate_credentials", map[string]any{"request": map[string]any{}, "auth": basic}, false, ""},
		{"order", map[string]any{"request": order, "auth": basic}, false, ""},
		{"handle_client_credentials_request", map[string]any{"credential_id": devStoaCredential,
			"request": map[string]any{"client_id": devStoaClientID, "client_secret": devStoaClientSecret}}, false,
			"   # the host keeps this OAuth2 credential; then:"},
		{"order", map[string]any{"credential_id": devStoaCredential, "request": order,
			"page": map[string]any{"token": "3"}}, false, ""},
		{"sign", map[string]any{"credential_id": devStoaCredential, "request": map[string]any{"order_ids": ids}}, false, ""},
		{"fetch", map[string]any{"credential_id": devStoaCredential,
			"request": map[string]any{"order_ids": ids, "columns": []string{"id", "name", "ts_ms", "amount", "tags", "point"}}}, true, ""},
	}
	var out []string
	for _, c := range calls {
		b, err := json.Marshal(c.envelope)
		if err != nil {
			return nil, err
		}
		body := shellQuote(string(b))
		if c.stream {
			out = append(out, fmt.Sprintf("curl -sN {URL}/v1/connectors/stoa/%s -d %s | sed -n '1,2p;$p'   # 2 of 300 rows, then the final line", c.capability, body))
			continue
		}
		out = append(out, strings.TrimSpace(fmt.Sprintf("curl -s {URL}/v1/connectors/stoa/%s -d %s; echo%s", c.capability, body, c.note)))
	}
	return out, nil
}
