package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/testkit/harness"
	"github.com/connector-host/connector-host/testkit/oauthserver"
	"github.com/connector-host/connector-host/testkit/referenceoauth"
)

// The events gateway with a credential the host keeps: real processes (the
// host, the events-protocol plugin, the reference-oauth plugin), a real
// OAuth server and real HTTP, all on 127.0.0.1.

const (
	gwClientID     = "gateway-m2m"
	gwClientSecret = "CANARY-gateway-client-secret-7d41"
	gwCredential   = "gw-m2m"
)

// gatewayEvent is an answer event of POST /events.
type gatewayEvent struct {
	Name    string          `json:"name"`
	Version int             `json:"version"`
	ID      string          `json:"id"`
	FlowID  string          `json:"flowId"`
	Payload json.RawMessage `json:"payload"`
}

func postGatewayEvent(t *testing.T, h *harness.Host, name string, payload any) gatewayEvent {
	t.Helper()
	b, err := json.Marshal(map[string]any{"name": name, "version": 1, "id": "ev-1", "flowId": "flow-1", "payload": payload})
	if err != nil {
		t.Fatal(err)
	}
	r := h.Post(t, "/events", string(b))
	if r.Status != http.StatusOK {
		t.Fatalf("POST /events %s: HTTP %d %s", name, r.Status, r.Body)
	}
	var ev gatewayEvent
	if err := json.Unmarshal(r.Body, &ev); err != nil {
		t.Fatalf("POST /events %s: %v in %s", name, err, r.Body)
	}
	if ev.ID != "ev-1" || ev.FlowID != "flow-1" || ev.Version != 1 {
		t.Fatalf("answer does not copy the request's id, flowId and version: %s", r.Body)
	}
	return ev
}

func TestGatewayStoredCredential(t *testing.T) {
	t.Parallel()
	srv, err := oauthserver.Start(oauthserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.AddClient(oauthserver.Client{ID: gwClientID, Secret: gwClientSecret}); err != nil {
		t.Fatal(err)
	}
	events := harness.Build(t, "./plugins/eventsprotocol", "connector-events-protocol")
	oauthPlugin := harness.Build(t, "./testkit/cmd/connector-reference-oauth", "connector-reference-oauth")
	h := harness.StartHost(t, []harness.Plugin{{Path: events}, {Path: oauthPlugin}}, func(c *config.Config) {
		c.Connectors["reference-oauth"] = config.Connector{
			Settings: map[string]any{"port": srv.Port()},
			Env:      map[string]string{referenceoauth.EnvFlow: "CLIENT_CREDENTIALS"},
		}
	})

	// The host stores the credential (client credentials grant at the
	// OAuth server) through its HTTP API.
	r := h.Post(t, "/v1/connectors/reference-oauth/handle_client_credentials_request",
		fmt.Sprintf(`{"credential_id":%q,"request":{"client_id":%q,"client_secret":%q}}`, gwCredential, gwClientID, gwClientSecret))
	if r.Status != http.StatusOK {
		t.Fatalf("storing the credential: %d %s", r.Status, r.Body)
	}
	tok, _ := r.JSON(t)["response"].(map[string]any)["access_token"].(string)
	if tok == "" {
		t.Fatalf("no access token in %s", r.Body)
	}
	secrets := []string{gwClientSecret, tok}

	// The event's payload names the credential only: the host resolves it
	// and the plugin gets the bearer token, which the OAuth server's
	// protected resource accepts (whoami answers with the token's client).
	calls := srv.ResourceCalls()
	whoami := map[string]any{"credential_id": gwCredential, "request": map[string]any{}}
	ev := postGatewayEvent(t, h, "reference_oauth:whoami", whoami)
	if ev.Name != "reference_oauth:whoami:response" {
		t.Fatalf("answer %s %s", ev.Name, ev.Payload)
	}
	var p struct {
		Response struct {
			ClientID string `json:"client_id"`
			UserID   string `json:"user_id"`
		} `json:"response"`
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil || p.Response.ClientID != gwClientID {
		t.Fatalf("payload %s (%v), want client_id %s", ev.Payload, err, gwClientID)
	}
	if n := srv.ResourceCalls(); n != calls+1 {
		t.Fatalf("the protected resource was called %d times, want 1", n-calls)
	}
	if strings.Contains(string(ev.Payload), tok) {
		t.Fatalf("the answer event carries the access token: %s", ev.Payload)
	}

	// The server stops accepting the token: the plugin's unauthorized makes
	// the host get a new one once (a new client credentials grant) and
	// retry, so the event still succeeds.
	if err := srv.RevokeAccessToken(tok); err != nil {
		t.Fatal(err)
	}
	grants := srv.TokenRequests(oauthserver.GrantClientCredentials)
	if ev := postGatewayEvent(t, h, "reference_oauth:whoami", whoami); ev.Name != "reference_oauth:whoami:response" {
		t.Fatalf("after revocation: %s %s", ev.Name, ev.Payload)
	}
	if n := srv.TokenRequests(oauthserver.GrantClientCredentials); n != grants+1 {
		t.Fatalf("%d new client credentials grants after the revocation, want 1", n-grants)
	}
	stored, err := h.OAuth().Store().Credential(context.Background(), "reference-oauth", gwCredential)
	if err != nil || stored.Secrets.AccessToken == tok || stored.Secrets.AccessToken == "" {
		t.Fatalf("the stored credential was not renewed (%v)", err)
	}
	secrets = append(secrets, stored.Secrets.AccessToken)

	// A credential the host does not keep is the connector's not_found,
	// which the gateway answers as the notFound error event with the code.
	ev = postGatewayEvent(t, h, "reference_oauth:whoami", map[string]any{"credential_id": "nope", "request": map[string]any{}})
	var e struct {
		Code       string         `json:"code"`
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.Unmarshal(ev.Payload, &e); err != nil || ev.Name != "reference_oauth:whoami:notFound" ||
		e.Code != "reference-oauth.not_found" || !strings.Contains(fmt.Sprint(e.Parameters["message"]), "credential_id") {
		t.Fatalf("unknown credential: %s %s", ev.Name, ev.Payload)
	}

	// Without a credential the plugin refuses the call.
	ev = postGatewayEvent(t, h, "reference_oauth:whoami", map[string]any{"request": map[string]any{}})
	if ev.Name != "reference_oauth:whoami:unauthorized" {
		t.Fatalf("no credential: %s %s", ev.Name, ev.Payload)
	}

	// No secret reaches a log line (the reference-oauth plugin logs its
	// token on purpose; the SDK must mask it).
	if !h.Logs.WaitFor("whoami calling the resource", 5*time.Second) {
		t.Fatal("the plugin's token log line is missing: the scan below would prove nothing")
	}
	logs := h.Logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%d chars) appears in the logs", len(s))
		}
	}
}
