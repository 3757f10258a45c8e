package stoa

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/connector-host/connector-host/sdk"
)

// clientCredentialsToken fetches a token with the OAuth2 client credentials
// grant: POST {auth}/oauth/token/, HTTP Basic client authentication, form
// body grant_type=client_credentials (PROTOCOLS.md).
func (c *Client) clientCredentialsToken(ctx context.Context) (string, error) {
	const what = "oauth token"
	cfg := clientcredentials.Config{
		ClientID:     c.creds.ClientID,
		ClientSecret: c.creds.ClientSecret,
		TokenURL:     c.cfg.AuthBaseURL + "/oauth/token/",
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	var tok *oauth2.Token
	err := c.withRetry(ctx, func() error {
		tctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		tctx = context.WithValue(tctx, oauth2.HTTPClient, c.http)
		t, err := cfg.Token(tctx)
		if err == nil {
			tok = t
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			status := re.Response.StatusCode
			ce := &callError{code: sdk.CodeForHTTPStatus(status), status: status, retryable: retryableStatus(status)}
			detail := re.ErrorCode
			if detail == "" {
				detail = http.StatusText(status)
			}
			ce.msg = fmt.Sprintf("%s: Stoa's token endpoint answered HTTP %d: %s", what, status, clip(detail))
			if status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden {
				ce.code = sdk.Unauthorized
				ce.msg = fmt.Sprintf("%s: Stoa rejected the client credentials (HTTP %d: %s)", what, status, clip(detail))
			}
			return ce
		}
		if tctx.Err() != nil {
			return transportError(what, errIdleTimeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			return transportError(what, err)
		}
		// x/oauth2 flattens some transport errors into its message.
		msg := err.Error()
		if rest, ok := strings.CutPrefix(msg, "oauth2: cannot fetch token: "); ok {
			ce := &callError{code: sdk.ClientCallError, retryable: true, msg: fmt.Sprintf("%s: %s", what, clip(rest))}
			if strings.Contains(rest, "connection refused") {
				ce.code = sdk.ConnectionRejected
			}
			return ce
		}
		// Its checks of the answer, e.g. "server response missing access_token".
		return &callError{code: sdk.InvalidResponse, msg: fmt.Sprintf("%s: %s", what, clip(strings.TrimPrefix(msg, "oauth2: ")))}
	})
	if err != nil {
		return "", c.final(ctx, err)
	}
	if tok.AccessToken == "" {
		return "", sdk.Errorf(sdk.InvalidResponse, "%s: Stoa's answer has no access_token", what)
	}
	return tok.AccessToken, nil
}
