package wire

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDescriptionRoundTrip(t *testing.T) {
	t.Parallel()
	d := &Description{
		AppID: "a", Version: "1.2.3", SDKVersion: "1.0.0",
		Info:           DescriptionData{UserFriendlyName: "A", Description: "d", Categories: []string{"x"}, LogoURL: "https://l"},
		Capabilities:   []Capability{{Name: "c", Description: "cd", Streaming: true, RequestSchema: json.RawMessage(`{"type":"object"}`), ResponseSchema: json.RawMessage(`{}`)}},
		AuthModels:     []AuthModel{{Kind: "basic", Schema: json.RawMessage(`{}`)}},
		SettingsSchema: json.RawMessage(`{"type":"object"}`),
		OAuth: &OAuthSettings{
			AuthorizationURL: "https://{sub}.x/auth", TokenURL: "https://x/token", Scopes: map[string]string{"c": "a b"},
			Flow: FlowClientCredentials, ClientAuth: ClientSecretBasic, TokenRequestMethod: "GET", TokenRequestBody: BodyJSON,
			PKCE: true, DisabledCapabilities: []string{"refresh_access_token"},
		},
		InboundRoutes: []InboundRoute{{Method: "GET", Path: "/x/...", Description: "r"}},
	}
	if got := descriptionFromProto(descriptionToProto(d)); !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}
}

func TestCallResultChunkRoundTrip(t *testing.T) {
	t.Parallel()
	c := &Call{Capability: "c", Request: json.RawMessage(`{}`), Settings: json.RawMessage(`{"s":1}`), Auth: json.RawMessage(`{"token":{}}`), Page: &Page{Token: "t", Size: 3}, IncludeRawData: true, RequestID: "r"}
	if got := callFromProto(callToProto(c)); !reflect.DeepEqual(got, c) {
		t.Fatalf("call: %+v", got)
	}
	ok := &Result{Response: json.RawMessage(`1`), RawData: json.RawMessage(`2`), Page: &Page{Token: "n"}}
	if got := resultFromProto(resultToProto(ok)); !reflect.DeepEqual(got, ok) {
		t.Fatalf("result: %+v", got)
	}
	bad := &Result{Err: &Error{Code: "x", AppErrorCode: "a.y", Message: "m", RaisedBy: "b", RaisedIn: "i", Retryable: true}}
	if got := resultFromProto(resultToProto(bad)); !reflect.DeepEqual(got, bad) {
		t.Fatalf("error result: %+v", got)
	}
	for _, ch := range []*Chunk{
		{NDJSON: []byte("1\n2\n")},
		{NDJSON: []byte("3\n"), Done: true},
		{FinalPage: &Page{Token: "p"}},
		{Err: &Error{Code: "e"}},
	} {
		got := chunkFromProto(chunkToProto(ch))
		if !reflect.DeepEqual(got, ch) || got.End() != ch.End() {
			t.Fatalf("chunk: %+v want %+v", got, ch)
		}
	}
	// Items given by a sender arrive as NDJSON after the chunk's own.
	got := chunkFromProto(chunkToProto(&Chunk{NDJSON: []byte("1\n"), Items: []json.RawMessage{json.RawMessage(`{"a":2}`)}}))
	if string(got.NDJSON) != "1\n{\"a\":2}\n" || len(got.Lines()) != 2 || string(got.Lines()[1]) != `{"a":2}` {
		t.Fatalf("items: %q %q", got.NDJSON, got.Lines())
	}
	in := &InboundRequest{Method: "POST", Path: "/a%2Fb", RawQuery: "q=1", Header: map[string][]string{"X": {"1", "2"}}, Body: []byte("b"), Settings: json.RawMessage(`{}`)}
	if got := inboundRequestFromProto(inboundRequestToProto(in)); !reflect.DeepEqual(got, in) {
		t.Fatalf("inbound: %+v", got)
	}
}

func TestSaturateInt32(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   int
		want int32
	}{{0, 0}, {200, 200}, {-5, -5}, {1 << 31, 1<<31 - 1}, {1 << 40, 1<<31 - 1}, {-1 << 40, -1 << 31}} {
		if got := saturateInt32(c.in); got != c.want {
			t.Errorf("saturateInt32(%d) = %d, want %d", c.in, got, c.want)
		}
	}
	if p := pageFromProto(pageToProto(&Page{Token: "t", Size: 1 << 40})); p.Size != 1<<31-1 {
		t.Errorf("page size 1<<40 became %d", p.Size)
	}
}
