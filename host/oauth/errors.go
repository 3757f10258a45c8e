package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"unicode"

	"golang.org/x/oauth2"

	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// This file is the one place where OAuth failures get their codes.
// docs/oauth.md documents these tables; a test checks that they agree.

// AuthorizationErrorCodes maps the error a provider sends to the redirect
// URI (RFC 6749 §4.1.2.1) to a contract code.
var AuthorizationErrorCodes = map[string]sdk.Code{
	"invalid_request":           sdk.BadRequest,
	"unauthorized_client":       sdk.PermissionDenied,
	"access_denied":             sdk.PermissionDenied,
	"unsupported_response_type": sdk.UnsupportedOperation,
	"invalid_scope":             sdk.BadRequest,
	"server_error":              sdk.BadGateway,
	"temporarily_unavailable":   sdk.ServiceError,
}

// TokenErrorCodes maps the error of a token endpoint (RFC 6749 §5.2) to a
// contract code, for refresh and client-credentials requests.
var TokenErrorCodes = map[string]sdk.Code{
	"invalid_request":         sdk.BadRequest,
	"invalid_client":          sdk.Unauthorized,
	"invalid_grant":           sdk.CredsRevoked,
	"unauthorized_client":     sdk.PermissionDenied,
	"unsupported_grant_type":  sdk.UnsupportedOperation,
	"invalid_scope":           sdk.BadRequest,
	"server_error":            sdk.BadGateway,
	"temporarily_unavailable": sdk.ServiceError,
	"access_denied":           sdk.PermissionDenied,
}

// ExchangeErrorCodes overrides TokenErrorCodes when exchanging an
// authorization code: there invalid_grant means the code or the PKCE
// verifier was refused (expired, already used, other redirect URI), not a
// revoked grant.
var ExchangeErrorCodes = map[string]sdk.Code{
	"invalid_grant": sdk.BadRequest,
}

// UnknownOAuthErrorCode is the code of an OAuth error string none of the
// tables knows.
const UnknownOAuthErrorCode = sdk.APIError

// grant is the kind of token request, for error mapping and messages.
type grant string

const (
	grantExchange          grant = "authorization_code"
	grantRefresh           grant = "refresh_token"
	grantClientCredentials grant = "client_credentials"
)

// tokenErrorCode returns the code of an OAuth error from the token
// endpoint for a grant.
func tokenErrorCode(g grant, oauthErr string) sdk.Code {
	if g == grantExchange {
		if c, ok := ExchangeErrorCodes[oauthErr]; ok {
			return c
		}
	}
	if c, ok := TokenErrorCodes[oauthErr]; ok {
		return c
	}
	return UnknownOAuthErrorCode
}

// authorizationErrorCode returns the code of an error sent to the
// redirect URI.
func authorizationErrorCode(oauthErr string) sdk.Code {
	if c, ok := AuthorizationErrorCodes[oauthErr]; ok {
		return c
	}
	return UnknownOAuthErrorCode
}

// oauthError is a failure of an OAuth operation, ready for the envelope.
func oauthError(code sdk.Code, appErrorCode, raisedIn, format string, args ...any) *wire.Error {
	return &wire.Error{
		Code:         string(code),
		AppErrorCode: appErrorCode,
		Message:      fmt.Sprintf(format, args...),
		RaisedBy:     "host",
		RaisedIn:     raisedIn,
	}
}

// describe makes a provider's error text safe to show: printable, short.
// It never contains our secrets (the provider does not echo them; the
// caller masks live secrets anyway).
func describe(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// classifyTokenError maps an error from a token request to the envelope.
// Only the OAuth error code, its description and the HTTP status are
// used: never the request, and never x/oauth2's raw error text, which can
// quote the response body.
func classifyTokenError(g grant, raisedIn string, err error) *wire.Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if re.ErrorCode != "" {
			code := tokenErrorCode(g, re.ErrorCode)
			msg := fmt.Sprintf("token endpoint refused the %s request: %s", g, re.ErrorCode)
			if d := describe(re.ErrorDescription); d != "" {
				msg += " (" + d + ")"
			}
			if code == sdk.CredsRevoked {
				msg += "; the grant was revoked or expired: log in again"
			}
			return oauthError(code, "oauth."+re.ErrorCode, raisedIn, "%s", msg)
		}
		code := sdk.CodeForHTTPStatus(status)
		if status >= 200 && status < 300 {
			code = sdk.InvalidResponse
		}
		return oauthError(code, "", raisedIn, "token endpoint answered HTTP %d to the %s request without an OAuth error", status, g)
	}
	return classifyTransportError(raisedIn, "token endpoint", err)
}

// classifyTransportError maps a failure to reach an endpoint.
func classifyTransportError(raisedIn, what string, err error) *wire.Error {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return oauthError(sdk.ConnectionTimeout, "", raisedIn, "%s did not answer in time", what)
	case errors.Is(err, context.Canceled):
		return oauthError(sdk.RequestTimeout, "", raisedIn, "cancelled while calling the %s", what)
	case errors.Is(err, syscall.ECONNREFUSED):
		return oauthError(sdk.ConnectionRejected, "", raisedIn, "%s refused the connection", what)
	case errors.Is(err, syscall.ECONNRESET):
		return oauthError(sdk.ConnectionClosed, "", raisedIn, "%s closed the connection", what)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return oauthError(sdk.ClientCallError, "", raisedIn, "calling the %s failed: %s", what, describe(uerr.Err.Error()))
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "oauth2: ") {
		// x/oauth2's own parse errors ("server response missing
		// access_token", "cannot parse json") — about the answer.
		if i := strings.Index(msg, "\n"); i >= 0 {
			msg = msg[:i]
		}
		return oauthError(sdk.InvalidResponse, "", raisedIn, "%s gave an answer that is not a token response: %s", what, describe(strings.TrimPrefix(msg, "oauth2: ")))
	}
	return oauthError(sdk.ClientCallError, "", raisedIn, "calling the %s failed: %s", what, describe(msg))
}
