package oauth

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// FuzzInvoke: any request and settings bytes give a response or an error
// with a contract code — never a panic. The token URL is a closed local
// port, so valid inputs fail fast at the connection.
func FuzzInvoke(f *testing.F) {
	seeds := []struct{ req, settings string }{
		{`{"client_id":"c","redirect_uri":"http://127.0.0.1/cb","state":"s"}`, `{"port":1}`},
		{`{"client_id":"c","client_secret":"s","redirect_uri_with_code":"http://x/cb?code=1&state=2","code_verifier":"v"}`, `{"port":"1"}`},
		{`{"client_id":"c","client_secret":"s","redirect_uri_with_code":"http://x/cb?error=access_denied&error_description=%00%ff"}`, `{}`},
		{`{"client_id":"c","client_secret":"s","refresh_token":"r"}`, `{"port":1.5}`},
		{`{"client_id":"c","client_secret":"s","scopes":["a"],"capabilities":["whoami","x"]}`, `{"port":"../x"}`},
		{`[]`, `null`},
		{`{"client_id":{}}`, `[1]`},
		{``, ``},
	}
	for _, s := range seeds {
		f.Add(s.req, s.settings, uint8(0))
		f.Add(s.req, s.settings, uint8(3))
	}
	st, err := store.Open(f.TempDir(), "")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	m, err := New(Options{Store: st, PublicURL: "http://127.0.0.1:1", TokenTimeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	desc := &wire.Description{AppID: "acme", AuthModels: []wire.AuthModel{{Kind: "oauth"}}, OAuth: &wire.OAuthSettings{
		AuthorizationURL: "http://127.0.0.1:{port}/authorize", TokenURL: "http://127.0.0.1:{port}/token",
		Scopes: map[string]string{"whoami": "a b"}, Flow: wire.FlowCode, ClientAuth: wire.ClientSecretPost,
		TokenRequestMethod: "POST", TokenRequestBody: wire.BodyForm, PKCE: true,
	}}
	caps := []string{sdk.GetAuthorizationURL, sdk.HandleAuthorizationCallback, sdk.RefreshAccessToken, sdk.HandleClientCredentialsRequest}
	f.Fuzz(func(t *testing.T, req, settings string, which uint8) {
		name := caps[int(which)%len(caps)]
		if name == sdk.HandleClientCredentialsRequest {
			return // not a code-flow capability
		}
		res, handled := m.Invoke(context.Background(), "acme", desc, name, &wire.Call{Request: json.RawMessage(req), Settings: json.RawMessage(settings)}, "")
		if !handled {
			t.Fatalf("%s not handled", name)
		}
		if res.Err != nil {
			if !sdk.Code(res.Err.Code).Valid() || res.Err.Message == "" {
				t.Fatalf("bad error %+v", res.Err)
			}
			return
		}
		if !json.Valid(res.Response) {
			t.Fatalf("invalid response %q", res.Response)
		}
	})
}
