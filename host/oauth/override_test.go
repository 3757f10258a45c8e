package oauth_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/testkit/harness"
	"github.com/connector-host/connector-host/testkit/oauthserver"
	"github.com/connector-host/connector-host/testkit/referenceoauth"
)

// TestOperatorOverridesOAuthURLs: the host configuration (not requests)
// can point a connector's OAuth at another identity provider.
func TestOperatorOverridesOAuthURLs(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	if err := srv.AddClient(oauthserver.Client{ID: "override-client", Secret: "override-secret-123"}); err != nil {
		t.Fatal(err)
	}
	h := harness.StartHost(t, []harness.Plugin{{AppID: appCC, Path: plugin(t)}}, func(c *config.Config) {
		c.Connectors[appCC] = config.Connector{
			// The declared template would use port 1, where nothing listens.
			Settings: map[string]any{"port": 1},
			Env:      map[string]string{referenceoauth.EnvAppID: appCC, referenceoauth.EnvFlow: "CLIENT_CREDENTIALS"},
			OAuth:    config.OAuthURLs{TokenURL: srv.URL() + "/oauth/token"},
		}
	})
	info := h.Get(t, "/v1/connectors/"+appCC)
	var d struct {
		OAuth struct {
			TokenURL string `json:"token_url"`
		} `json:"oauth"`
	}
	if err := json.Unmarshal(info.Body, &d); err != nil || d.OAuth.TokenURL != srv.URL()+"/oauth/token" {
		t.Fatalf("info shows token_url %q: %v", d.OAuth.TokenURL, err)
	}
	r := h.Post(t, "/v1/connectors/"+appCC+"/handle_client_credentials_request",
		`{"request":{"client_id":"override-client","client_secret":"override-secret-123"}}`)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"access_token"`) {
		t.Fatalf("client credentials through the override: %d %s", r.Status, r.Body)
	}
}
