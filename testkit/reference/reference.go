// Package reference is the reference test plugin of connector-host: small
// capabilities that exercise every path of the host (echo, fail, sleep,
// panic, crash, stream, noop). Host tests, the conformance self-test and the
// benchmarks run it as the connector-reference binary.
package reference

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/connector-host/connector-host/sdk"
)

// AppID is the reference plugin's app_id.
const AppID = "reference"

// Settings are the reference plugin's settings.
type Settings struct {
	Greeting string     `json:"greeting,omitempty" jsonschema:"description=Prefix echoed back in echo responses"`
	APIKey   sdk.Secret `json:"api_key,omitempty" jsonschema:"description=A secret setting (never logged)"`
}

// EchoRequest is echo's request; echo returns it as is.
type EchoRequest struct {
	Message string         `json:"message,omitempty"`
	Count   int            `json:"count,omitempty" jsonschema:"minimum=0"`
	Tags    []string       `json:"tags,omitempty"`
	Extra   map[string]any `json:"extra,omitempty"`
}

// EchoResponse is echo's response.
type EchoResponse struct {
	EchoRequest
	Greeting string `json:"greeting,omitempty"`
}

// FailRequest names the error fail returns.
type FailRequest struct {
	Code         string `json:"code" jsonschema:"minLength=1"`
	Message      string `json:"message,omitempty"`
	AppErrorCode string `json:"app_error_code,omitempty"`
}

// SleepRequest is how long sleep sleeps.
type SleepRequest struct {
	MS int `json:"ms" jsonschema:"minimum=0,maximum=3600000"`
}

// SleepResponse reports the time slept.
type SleepResponse struct {
	SleptMS int64 `json:"slept_ms"`
	// DeadlineInMS is how long the call had left when the handler started
	// (absent when its context has no deadline).
	DeadlineInMS int64 `json:"deadline_in_ms,omitempty"`
}

// StreamRequest is how many items stream sends.
type StreamRequest struct {
	N int `json:"n" jsonschema:"minimum=0,maximum=100000000"`
	// IntervalMS pauses before each item (a slow or quiet stream); the
	// pause honours cancellation.
	IntervalMS int `json:"interval_ms,omitempty" jsonschema:"minimum=0,maximum=3600000"`
}

// StreamItem is one streamed item.
type StreamItem struct {
	I int `json:"i"`
}

// Empty is an empty request or response.
type Empty struct{}

// EnvAppID overrides the app_id, so that one binary can be loaded as a
// second connector in tests (e.g. connector-reference2).
const EnvAppID = "REFERENCE_APP_ID"

// New returns the reference integration with its capabilities registered.
func New() *sdk.Integration {
	appID := AppID
	if v := os.Getenv(EnvAppID); v != "" {
		appID = v
	}
	integ := &sdk.Integration{
		AppID:   appID,
		Version: "1.0.0",
		Description: sdk.DescriptionData{
			UserFriendlyName: "Reference",
			Description:      "Reference test plugin: echo, fail, sleep, panic, crash, stream and noop.",
			Categories:       []string{"testing"},
		},
		Auth:     []sdk.AuthKind{sdk.AuthBasic, sdk.AuthToken, sdk.AuthOAuth},
		Settings: Settings{},
	}
	sdk.Register(integ, "echo", echo, sdk.WithDescription("Returns its request."))
	sdk.Register(integ, "fail", fail, sdk.WithDescription("Returns the error named by code."))
	sdk.Register(integ, "sleep", sleep, sdk.WithDescription("Sleeps ms milliseconds; honours cancellation."))
	sdk.Register(integ, "panic", panicking, sdk.WithDescription("Panics."))
	sdk.Register(integ, "crash", crash, sdk.WithDescription("Exits the plugin process mid-call."))
	sdk.RegisterStream(integ, "stream", stream, sdk.WithDescription("Streams n items {\"i\": k}."))
	sdk.Register(integ, "noop", noop, sdk.WithDescription("Does nothing; returns {}."))
	return integ
}

func echo(_ context.Context, req sdk.Request[EchoRequest]) (EchoResponse, error) {
	var s Settings
	if err := req.DecodeSettings(&s); err != nil {
		return EchoResponse{}, err
	}
	// Logs the credentials on purpose: the SDK must mask them (the canary
	// tests check that no secret reaches a log line).
	req.Logger().Info("echo", "message", req.Args.Message, "auth_kinds", fmt.Sprint(req.Auth.Kinds()), "auth", authForLog(req.Auth), "api_key", string(s.APIKey))
	req.SetRawData(map[string]any{"echoed": true})
	return EchoResponse{EchoRequest: req.Args, Greeting: s.Greeting}, nil
}

// authForLog deliberately reveals the credential values (see echo).
func authForLog(a sdk.Auth) string {
	switch {
	case a.Basic != nil:
		return a.Basic.Username + ":" + a.Basic.Password.Reveal()
	case a.Token != nil:
		return a.Token.Token.Reveal()
	case a.OAuth != nil:
		return a.OAuth.AccessToken.Reveal()
	}
	return ""
}

func fail(_ context.Context, req sdk.Request[FailRequest]) (Empty, error) {
	msg := req.Args.Message
	if msg == "" {
		msg = "failed on request"
	}
	return Empty{}, &sdk.Error{Code: sdk.Code(req.Args.Code), Message: msg, AppErrorCode: req.Args.AppErrorCode}
}

func sleep(ctx context.Context, req sdk.Request[SleepRequest]) (SleepResponse, error) {
	start := time.Now()
	req.Logger().Debug("sleep started", "ms", req.Args.MS)
	t := time.NewTimer(time.Duration(req.Args.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		resp := SleepResponse{SleptMS: time.Since(start).Milliseconds()}
		if dl, ok := ctx.Deadline(); ok {
			resp.DeadlineInMS = max(dl.Sub(start).Milliseconds(), 1)
		}
		return resp, nil
	case <-ctx.Done():
		req.Logger().Info("sleep cancelled", "after_ms", time.Since(start).Milliseconds(), "reason", ctx.Err().Error())
		return SleepResponse{}, ctx.Err()
	}
}

func panicking(context.Context, sdk.Request[Empty]) (Empty, error) {
	panic("reference: panic capability called")
}

func crash(_ context.Context, req sdk.Request[Empty]) (Empty, error) {
	req.Logger().Warn("crash capability called: exiting")
	os.Exit(3)
	return Empty{}, nil
}

func stream(ctx context.Context, req sdk.Request[StreamRequest], out *sdk.Stream[StreamItem]) error {
	if req.Args.IntervalMS > 0 {
		// A slow stream: the caller sees it open before the first item.
		if err := out.Open(); err != nil {
			return err
		}
	}
	for k := 0; k < req.Args.N; k++ {
		if req.Args.IntervalMS > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(req.Args.IntervalMS) * time.Millisecond):
			}
		}
		if err := out.Send(StreamItem{I: k}); err != nil {
			return err
		}
	}
	return nil
}

func noop(context.Context, sdk.Request[Empty]) (Empty, error) {
	return Empty{}, nil
}
