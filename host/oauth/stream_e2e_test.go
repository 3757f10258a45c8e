package oauth_test

import (
	"strings"
	"testing"

	"github.com/connector-host/connector-host/testkit/oauthserver"
)

// A stream called with a stored credential that the upstream rejects before
// the first item: the host refreshes once and starts the stream again.
func TestE2EStreamRefreshRetry(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := startEnv(t, srv, t.TempDir())
	e.login("prod")
	stream := func() (int, string) {
		r := e.post("/v1/connectors/"+app+"/whoami_stream", map[string]any{"credential_id": "prod", "request": map[string]any{}})
		return r.Status, string(r.Body)
	}
	if status, body := stream(); status != 200 || !strings.Contains(body, `"user_id":"user-1"`) || !strings.HasSuffix(strings.TrimSpace(body), `{"page":null}`) {
		t.Fatalf("first stream: %d %s", status, body)
	}
	e.rememberStored(app, "prod")
	c, err := e.h.OAuth().Store().Credential(t.Context(), app, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.RevokeAccessToken(c.Secrets.AccessToken); err != nil {
		t.Fatal(err)
	}
	before := srv.TokenRequests(oauthserver.GrantRefreshToken)
	status, body := stream()
	if status != 200 || !strings.Contains(body, `"user_id":"user-1"`) || strings.Contains(body, `"error"`) {
		t.Fatalf("after the rejection: %d %s", status, body)
	}
	if got := srv.TokenRequests(oauthserver.GrantRefreshToken) - before; got != 1 {
		t.Fatalf("%d refresh requests after a rejected stream, want 1", got)
	}
	e.rememberStored(app, "prod")
	e.h.Close()
	e.checkNoSecrets()
}
