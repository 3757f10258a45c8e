package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

func TestMergeSettings(t *testing.T) {
	t.Parallel()
	defaults := map[string]any{"environment": "prod", "workers": 10.0}
	for _, tc := range []struct {
		name     string
		defaults map[string]any
		req      string
		want     string
		code     sdk.Code
	}{
		{"no defaults: the request as is", nil, `{"a":1}`, `{"a":1}`, ""},
		{"defaults only", defaults, ``, `{"environment":"prod","workers":10}`, ""},
		{"null request", defaults, `null`, `{"environment":"prod","workers":10}`, ""},
		{"request key wins", defaults, `{"environment":"dev"}`, `{"environment":"dev","workers":10}`, ""},
		{"request adds a key", defaults, `{"x":true}`, `{"environment":"prod","workers":10,"x":true}`, ""},
		{"not an object", defaults, `[1]`, ``, sdk.BadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var req []byte
			if tc.req != "" {
				req = []byte(tc.req)
			}
			got, f := mergeSettings("app", tc.defaults, req)
			if tc.code != "" {
				if f == nil || f.Err.Code != string(tc.code) || f.AppID != "app" {
					t.Fatalf("failure %+v, want %s", f, tc.code)
				}
				return
			}
			if f != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, f, tc.want)
			}
		})
	}
}

func TestInboundRouteMatching(t *testing.T) {
	t.Parallel()
	routes := []wire.InboundRoute{
		{Method: "GET", Path: "/datalayout"},
		{Method: "GET", Path: "/entity/..."},
		{Method: "POST", Path: "/entity/..."},
		{Path: "/any"},
	}
	for _, tc := range []struct {
		method, path string
		declared     bool
		allowed      []string
	}{
		{"GET", "/datalayout", true, []string{"GET"}},
		{"POST", "/datalayout", false, []string{"GET"}},
		{"GET", "/entity", true, []string{"GET", "POST"}},
		{"POST", "/entity/product/1", true, []string{"GET", "POST"}},
		{"DELETE", "/entity/product", false, []string{"GET", "POST"}},
		{"GET", "/entityx", false, nil},
		{"PATCH", "/any", true, nil},
		{"GET", "/any/sub", false, nil},
		{"GET", "/", false, nil},
	} {
		if got := inboundDeclared(routes, tc.method, tc.path); got != tc.declared {
			t.Errorf("%s %s declared = %v", tc.method, tc.path, got)
		}
		if got := inboundMethods(routes, tc.path); fmt.Sprint(got) != fmt.Sprint(tc.allowed) {
			t.Errorf("%s allowed = %v, want %v", tc.path, got, tc.allowed)
		}
	}
	if !inboundPathMatches("/...", "/anything/at/all") {
		t.Error(`"/..." must match every path`)
	}
}

func TestCallFailureCodes(t *testing.T) {
	t.Parallel()
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		name            string
		parent, callCtx context.Context
		err             error
		want            sdk.Code
	}{
		{"caller went away", cancelled, cancelled, errors.New("x"), sdk.RequestTimeout},
		{"deadline", live, expired, errors.New("x"), sdk.RequestTimeout},
		{"failed plugin", live, live, &supervisor.FailedError{}, sdk.ServiceError},
		{"stopping", live, live, supervisor.ErrStopped, sdk.ServiceError},
		{"stream cut", live, live, io.ErrUnexpectedEOF, sdk.ConnectionClosed},
		{"process died", live, live, status.Error(codes.Unavailable, "eof"), sdk.ConnectionClosed},
		{"grpc deadline", live, live, status.Error(codes.DeadlineExceeded, "late"), sdk.RequestTimeout},
		{"too large", live, live, status.Error(codes.ResourceExhausted, "big"), sdk.BadRequest},
		{"protocol mismatch", live, live, status.Error(codes.Unimplemented, "no"), sdk.NotImplemented},
		{"anything else", live, live, errors.New("boom"), sdk.InternalError},
	} {
		f := callFailure("app", "cap", tc.parent, tc.callCtx, tc.err)
		if f.Err.Code != string(tc.want) || f.Err.RaisedBy != "host" || f.AppID != "app" {
			t.Errorf("%s: %+v, want %s", tc.name, f.Err, tc.want)
		}
	}
}

func TestPluginFailureUnknownCode(t *testing.T) {
	t.Parallel()
	f := pluginFailure("app", &wire.Error{Code: "made_up", Message: "m", RaisedBy: "x", RaisedIn: "y"})
	if f.Err.Code != string(sdk.InternalError) || f.Status() != 500 {
		t.Fatalf("%+v", f.Err)
	}
	ok := pluginFailure("app", &wire.Error{Code: string(sdk.NotFound)})
	if ok.Status() != 404 || ok.Error() != "app.not_found: " {
		t.Fatalf("%+v %q", ok.Err, ok.Error())
	}
	for code, want := range map[sdk.Code]bool{sdk.Unauthorized: true, sdk.AuthenticationExpired: true, sdk.Unauthenticated: true, sdk.PermissionDenied: false, sdk.NotFound: false} {
		if rejectsCredential(&wire.Error{Code: string(code)}) != want {
			t.Errorf("rejectsCredential(%s) != %v", code, want)
		}
	}
}
