package main

import (
	"context"
	"fmt"

	"github.com/connector-host/connector-host/testkit/oauthserver"
)

// The local OAuth 2.0 server (testkit/oauthserver) behind the
// reference-oauth test plugin: `make run` users can try the host's OAuth
// flows and stored credentials end to end.

const (
	devOAuthClientID     = "devstack"
	devOAuthClientSecret = "devstack-local-secret" //nolint:gosec // fixed on purpose: it opens only the local test OAuth server
)

func init() {
	emulators = append(emulators, emulator{
		name:  "OAuth 2.0",
		appID: "reference-oauth",
		start: func(_ context.Context, _ string) (started, error) {
			srv, err := oauthserver.Start(oauthserver.Options{})
			if err != nil {
				return started{}, err
			}
			if err := srv.AddClient(oauthserver.Client{ID: devOAuthClientID, Secret: devOAuthClientSecret}); err != nil {
				srv.Close()
				return started{}, err
			}
			return started{
				settings: map[string]any{"port": srv.Port()},
				about:    fmt.Sprintf("%s (client %s / %s; authorizations are approved at once)", srv.URL(), devOAuthClientID, devOAuthClientSecret),
				examples: []string{
					fmt.Sprintf(`curl -s {URL}/v1/connectors/reference-oauth/get_authorization_url -d '{"credential_id":"demo","request":{"client_id":%q,"client_secret":%q}}'   # open the authorization_url, then:`, devOAuthClientID, devOAuthClientSecret),
					`curl -s {URL}/v1/connectors/reference-oauth/whoami -d '{"credential_id":"demo","request":{}}'`,
				},
				stop: srv.Close,
			}, nil
		},
	})
}
