package stoa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/connector-host/connector-host/sdk"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

// restCreds are the emulator's default REST credentials.
var restCreds = Credentials{Email: stoaemu.DefaultEmail, Password: stoaemu.DefaultPassword}

// exampleOrder selects the emulator's default product (25 objects).
func exampleOrder() OrderRequest {
	return OrderRequest{ProductGroupName: "exampleGroup", ProductName: "exampleProduct", Workspace: "apps", OwnerID: "owner123"}
}

func intp(v int) *int { return &v }

// startEmu starts an emulator for the test.
func startEmu(t testing.TB, opts stoaemu.Options) *stoaemu.Server {
	t.Helper()
	srv := stoaemu.New(opts)
	if err := srv.Start(); err != nil {
		t.Fatalf("emulator: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// fastRetry keeps retry pauses short in tests.
var fastRetry = RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

// newClient returns a client of srv; mod may adjust the settings.
func newClient(t testing.TB, srv *stoaemu.Server, creds Credentials, opts Options, mod func(*Settings)) *Client {
	t.Helper()
	s := Settings{AuthBaseURL: srv.AuthURL(), APIBaseURL: srv.APIURL(), TimeoutS: 5}
	if mod != nil {
		mod(&s)
	}
	if opts.Retry == (RetryPolicy{}) {
		opts.Retry = fastRetry
	}
	c, err := New(s, creds, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// oauthToken obtains a token the way the host's OAuth module does: client
// credentials grant, client authentication with HTTP Basic, form body.
func oauthToken(t testing.TB, srv *stoaemu.Server) string {
	t.Helper()
	cfg := clientcredentials.Config{
		ClientID: stoaemu.DefaultClientID, ClientSecret: stoaemu.DefaultClientSecret,
		TokenURL: srv.AuthURL() + "/oauth/token/", AuthStyle: oauth2.AuthStyleInHeader,
	}
	tok, err := cfg.Token(context.Background())
	if err != nil {
		t.Fatalf("oauth token: %v", err)
	}
	return tok.AccessToken
}

// authModes runs f once per auth mode against its own emulator.
func authModes(t *testing.T, opts stoaemu.Options, f func(t *testing.T, srv *stoaemu.Server, creds Credentials)) {
	t.Run("rest", func(t *testing.T) {
		t.Parallel()
		srv := startEmu(t, opts)
		f(t, srv, restCreds)
	})
	t.Run("oauth2", func(t *testing.T) {
		t.Parallel()
		srv := startEmu(t, opts)
		f(t, srv, Credentials{AccessToken: oauthToken(t, srv)})
	})
}

// wantCode checks that err is an *sdk.Error with code and a message that
// contains every part.
func wantCode(t testing.TB, err error, code sdk.Code, parts ...string) *sdk.Error {
	t.Helper()
	var se *sdk.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want *sdk.Error with code %s", err, err, code)
	}
	if se.Code != code {
		t.Fatalf("error code %s (%v), want %s", se.Code, se, code)
	}
	for _, p := range parts {
		if !strings.Contains(se.Message, p) {
			t.Errorf("error message %q does not contain %q", se.Message, p)
		}
	}
	noSecrets(t, se.Error())
	return se
}

// noSecrets fails when s contains a credential or a signature.
func noSecrets(t testing.TB, s string) {
	t.Helper()
	for _, secret := range []string{stoaemu.DefaultPassword, stoaemu.DefaultClientSecret, "Signature=", "Bearer "} {
		if strings.Contains(s, secret) {
			t.Errorf("message leaks %q: %s", secret, s)
		}
	}
}

// collector gathers fetched rows.
type collector struct {
	mu   sync.Mutex
	rows []json.RawMessage
}

func (c *collector) emit(row json.RawMessage) error {
	if !json.Valid(row) {
		return errors.New("invalid JSON row")
	}
	c.mu.Lock()
	c.rows = append(c.rows, bytes.Clone(row)) // rows are valid during the call only
	c.mu.Unlock()
	return nil
}

// expectedRows concatenates the oracle rows of ids.
func expectedRows(t testing.TB, srv *stoaemu.Server, ids, columns []string) (cols []string, rows []map[string]any) {
	t.Helper()
	for _, id := range ids {
		exp, err := srv.ExpectedRows(id, columns)
		if err != nil {
			t.Fatalf("oracle %s: %v", id, err)
		}
		cols = exp.Columns
		rows = append(rows, exp.Rows...)
	}
	return cols, rows
}

// compareRows checks fetched rows against the oracle, cell by cell.
func compareRows(t testing.TB, got []json.RawMessage, cols []string, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range got {
		if err := stoaemu.CompareRow(got[i], cols, want[i]); err != nil {
			t.Fatalf("row %d: %v\n%s", i, err, got[i])
		}
	}
}
