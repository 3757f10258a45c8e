package sdk_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/connector-host/connector-host/sdk"
)

type greetRequest struct {
	Name string `json:"name" jsonschema:"minLength=1"`
}

type greetResponse struct {
	Greeting string `json:"greeting"`
}

func newGreeter() *sdk.Integration {
	integ := &sdk.Integration{
		AppID:       "greeter",
		Version:     "1.0.0",
		Description: sdk.DescriptionData{UserFriendlyName: "Greeter", Description: "Says hello."},
	}
	sdk.Register(integ, "greet", func(_ context.Context, req sdk.Request[greetRequest]) (greetResponse, error) {
		return greetResponse{Greeting: "hello, " + req.Args.Name}, nil
	})
	return integ
}

// Register a typed capability; the request is validated against the JSON
// Schema generated from greetRequest before the handler runs.
func ExampleRegister() {
	integ := newGreeter()
	status, body := integ.Invoke(context.Background(), "greet", []byte(`{"request":{"name":"Ada"}}`))
	fmt.Println(status, string(body))

	status, body = integ.Invoke(context.Background(), "greet", []byte(`{"request":{}}`))
	fmt.Println(status, string(body))
	// Output:
	// 200 {"response":{"greeting":"hello, Ada"},"raw_data":null,"page":null}
	//
	// 400 {"is_error":true,"response":null,"error":{"message":"request.name: is required","status_code":400,"error_code":"greeter.bad_request","app_id":"greeter","raised_by":"sdk.Error","raised_in":"sdk.validate"}}
}

// A streaming capability sends any number of items, then ends with a page
// line (or an error line).
func ExampleRegisterStream() {
	integ := &sdk.Integration{AppID: "counter", Version: "0.1.0", Description: sdk.DescriptionData{Description: "Counts."}}
	type countRequest struct {
		To int `json:"to" jsonschema:"minimum=0,maximum=1000"`
	}
	type item struct {
		N int `json:"n"`
	}
	sdk.RegisterStream(integ, "count", func(_ context.Context, req sdk.Request[countRequest], out *sdk.Stream[item]) error {
		for n := 1; n <= req.Args.To; n++ {
			if err := out.Send(item{N: n}); err != nil {
				return err
			}
		}
		req.SetNextPage(sdk.Page{Token: "after-3"})
		return nil
	})
	_, body := integ.Invoke(context.Background(), "count", []byte(`{"request":{"to":3}}`))
	fmt.Print(string(body))
	// Output:
	// {"n":1}
	// {"n":2}
	// {"n":3}
	// {"page":{"token":"after-3"}}
}

// errQuota is an error type of some upstream client library.
type errQuota struct{ remaining int }

func (e *errQuota) Error() string { return fmt.Sprintf("quota exhausted (%d left)", e.remaining) }

// ErrorHandlers map a library's error types to contract codes, as Lumos'
// exception handlers do.
func ExampleMapError() {
	integ := &sdk.Integration{
		AppID:         "quota",
		Version:       "1.0.0",
		Description:   sdk.DescriptionData{Description: "Quota demo."},
		ErrorHandlers: []sdk.ErrorHandler{sdk.MapError[*errQuota](sdk.RateLimit)},
	}
	sdk.Register(integ, "list_accounts", func(context.Context, sdk.Request[struct{}]) ([]string, error) {
		return nil, fmt.Errorf("listing: %w", &errQuota{remaining: 0})
	})
	status, body := integ.Invoke(context.Background(), "list_accounts", []byte(`{"request":{}}`))
	fmt.Println(status, string(body))
	// Output:
	// 429 {"is_error":true,"response":null,"error":{"message":"quota exhausted (0 left)","status_code":429,"error_code":"quota.rate_limit","app_id":"quota","raised_by":"*sdk_test.errQuota","raised_in":"sdk_test.ExampleMapError.func1"}}
}

// Raise a contract error with its code directly.
func ExampleErrorf() {
	err := sdk.Errorf(sdk.NotFound, "account %q does not exist", "42")
	var e *sdk.Error
	fmt.Println(errors.As(err, &e), e.Code, e.Code.HTTPStatus(), e.Message)
	// Output:
	// true not_found 404 account "42" does not exist
}

// Settings are declared by type, validated on every call, and read into the
// struct; sdk.Secret fields are marked x-secret and never printed.
func ExampleEnvelope_DecodeSettings() {
	type settings struct {
		Region string     `json:"region,omitempty" jsonschema:"enum=eu,enum=us"`
		APIKey sdk.Secret `json:"api_key"`
	}
	integ := &sdk.Integration{AppID: "regional", Version: "1.0.0", Description: sdk.DescriptionData{Description: "Regions."}, Settings: settings{}}
	sdk.Register(integ, "where", func(_ context.Context, req sdk.Request[struct{}]) (string, error) {
		s := settings{Region: "eu"} // defaults
		if err := req.DecodeSettings(&s); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %v", s.Region, s.APIKey), nil
	})
	_, body := integ.Invoke(context.Background(), "where", []byte(`{"request":{},"settings":{"api_key":"k-123"}}`))
	fmt.Print(string(body))
	_, body = integ.Invoke(context.Background(), "where", []byte(`{"request":{},"settings":{"region":"mars","api_key":"k"}}`))
	fmt.Print(string(body))
	// Output:
	// {"response":"eu [REDACTED]","raw_data":null,"page":null}
	// {"is_error":true,"response":null,"error":{"message":"settings.region: value must be one of 'eu', 'us'","status_code":400,"error_code":"regional.bad_request","app_id":"regional","raised_by":"sdk.Error","raised_in":"sdk.validate"}}
}
