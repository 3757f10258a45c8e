package wire

import (
	"encoding/json"
	"math"

	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
)

// This file holds every conversion between the plain Go types of this
// package and the generated protobuf types. Nothing else touches pb types
// field by field.

var flowToProto = map[string]pb.OauthFlow{
	FlowCode:              pb.OauthFlow_OAUTH_FLOW_CODE,
	FlowClientCredentials: pb.OauthFlow_OAUTH_FLOW_CLIENT_CREDENTIALS,
}

var clientAuthToProto = map[string]pb.OauthClientAuth{
	ClientSecretPost:  pb.OauthClientAuth_OAUTH_CLIENT_AUTH_SECRET_POST,
	ClientSecretBasic: pb.OauthClientAuth_OAUTH_CLIENT_AUTH_SECRET_BASIC,
}

var bodyToProto = map[string]pb.OauthRequestBody{
	BodyForm:  pb.OauthRequestBody_OAUTH_REQUEST_BODY_FORM,
	BodyJSON:  pb.OauthRequestBody_OAUTH_REQUEST_BODY_JSON,
	BodyQuery: pb.OauthRequestBody_OAUTH_REQUEST_BODY_QUERY,
}

func reverse[K comparable, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

var (
	flowFromProto       = reverse(flowToProto)
	clientAuthFromProto = reverse(clientAuthToProto)
	bodyFromProto       = reverse(bodyToProto)
)

func descriptionToProto(d *Description) *pb.DescribeResponse {
	out := &pb.DescribeResponse{
		AppId:          d.AppID,
		Version:        d.Version,
		SdkVersion:     d.SDKVersion,
		SettingsSchema: d.SettingsSchema,
		Description: &pb.DescriptionData{
			UserFriendlyName: d.Info.UserFriendlyName,
			Description:      d.Info.Description,
			Categories:       d.Info.Categories,
			LogoUrl:          d.Info.LogoURL,
		},
	}
	for _, c := range d.Capabilities {
		out.Capabilities = append(out.Capabilities, &pb.Capability{
			Name: c.Name, Description: c.Description, Streaming: c.Streaming,
			RequestSchema: c.RequestSchema, ResponseSchema: c.ResponseSchema,
		})
	}
	for _, a := range d.AuthModels {
		out.AuthModels = append(out.AuthModels, &pb.AuthModel{Kind: a.Kind, Schema: a.Schema})
	}
	for _, r := range d.InboundRoutes {
		out.InboundRoutes = append(out.InboundRoutes, &pb.InboundRoute{Method: r.Method, Path: r.Path, Description: r.Description})
	}
	if o := d.OAuth; o != nil {
		out.Oauth = &pb.OAuthSettings{
			AuthorizationUrl:     o.AuthorizationURL,
			TokenUrl:             o.TokenURL,
			Scopes:               o.Scopes,
			Flow:                 flowToProto[o.Flow],
			ClientAuth:           clientAuthToProto[o.ClientAuth],
			TokenRequestMethod:   o.TokenRequestMethod,
			TokenRequestBody:     bodyToProto[o.TokenRequestBody],
			Pkce:                 o.PKCE,
			DisabledCapabilities: o.DisabledCapabilities,
		}
	}
	return out
}

func descriptionFromProto(p *pb.DescribeResponse) *Description {
	d := &Description{
		AppID:          p.GetAppId(),
		Version:        p.GetVersion(),
		SDKVersion:     p.GetSdkVersion(),
		SettingsSchema: json.RawMessage(p.GetSettingsSchema()),
	}
	if info := p.GetDescription(); info != nil {
		d.Info = DescriptionData{
			UserFriendlyName: info.GetUserFriendlyName(),
			Description:      info.GetDescription(),
			Categories:       info.GetCategories(),
			LogoURL:          info.GetLogoUrl(),
		}
	}
	for _, c := range p.GetCapabilities() {
		d.Capabilities = append(d.Capabilities, Capability{
			Name: c.GetName(), Description: c.GetDescription(), Streaming: c.GetStreaming(),
			RequestSchema: c.GetRequestSchema(), ResponseSchema: c.GetResponseSchema(),
		})
	}
	for _, a := range p.GetAuthModels() {
		d.AuthModels = append(d.AuthModels, AuthModel{Kind: a.GetKind(), Schema: a.GetSchema()})
	}
	for _, r := range p.GetInboundRoutes() {
		d.InboundRoutes = append(d.InboundRoutes, InboundRoute{Method: r.GetMethod(), Path: r.GetPath(), Description: r.GetDescription()})
	}
	if o := p.GetOauth(); o != nil {
		d.OAuth = &OAuthSettings{
			AuthorizationURL:     o.GetAuthorizationUrl(),
			TokenURL:             o.GetTokenUrl(),
			Scopes:               o.GetScopes(),
			Flow:                 flowFromProto[o.GetFlow()],
			ClientAuth:           clientAuthFromProto[o.GetClientAuth()],
			TokenRequestMethod:   o.GetTokenRequestMethod(),
			TokenRequestBody:     bodyFromProto[o.GetTokenRequestBody()],
			PKCE:                 o.GetPkce(),
			DisabledCapabilities: o.GetDisabledCapabilities(),
		}
	}
	return d
}

func pageToProto(p *Page) *pb.Page {
	if p == nil {
		return nil
	}
	return &pb.Page{Token: p.Token, Size: saturateInt32(p.Size)}
}

// saturateInt32 narrows n to the int32 of the protocol, clamping a value out
// of its range instead of wrapping it (a huge page size stays huge rather
// than turning negative; a huge status stays invalid).
func saturateInt32(n int) int32 {
	switch {
	case n > math.MaxInt32:
		return math.MaxInt32
	case n < math.MinInt32:
		return math.MinInt32
	}
	return int32(n)
}

func pageFromProto(p *pb.Page) *Page {
	if p == nil {
		return nil
	}
	return &Page{Token: p.GetToken(), Size: int(p.GetSize())}
}

func callToProto(c *Call) *pb.InvokeRequest {
	return &pb.InvokeRequest{
		Capability:     c.Capability,
		Request:        c.Request,
		Settings:       c.Settings,
		Auth:           c.Auth,
		Page:           pageToProto(c.Page),
		IncludeRawData: c.IncludeRawData,
		RequestId:      c.RequestID,
	}
}

func callFromProto(p *pb.InvokeRequest) *Call {
	return &Call{
		Capability:     p.GetCapability(),
		Request:        p.GetRequest(),
		Settings:       p.GetSettings(),
		Auth:           p.GetAuth(),
		Page:           pageFromProto(p.GetPage()),
		IncludeRawData: p.GetIncludeRawData(),
		RequestID:      p.GetRequestId(),
	}
}

func errorToProto(e *Error) *pb.Error {
	if e == nil {
		return nil
	}
	return &pb.Error{
		Code: e.Code, AppErrorCode: e.AppErrorCode, Message: e.Message,
		RaisedBy: e.RaisedBy, RaisedIn: e.RaisedIn, Retryable: e.Retryable,
	}
}

func errorFromProto(p *pb.Error) *Error {
	if p == nil {
		return nil
	}
	return &Error{
		Code: p.GetCode(), AppErrorCode: p.GetAppErrorCode(), Message: p.GetMessage(),
		RaisedBy: p.GetRaisedBy(), RaisedIn: p.GetRaisedIn(), Retryable: p.GetRetryable(),
	}
}

func resultToProto(r *Result) *pb.InvokeResponse {
	if r.Err != nil {
		return &pb.InvokeResponse{Result: &pb.InvokeResponse_Error{Error: errorToProto(r.Err)}}
	}
	return &pb.InvokeResponse{Result: &pb.InvokeResponse_Success{Success: &pb.Success{
		Response: r.Response, RawData: r.RawData, Page: pageToProto(r.Page),
	}}}
}

func resultFromProto(p *pb.InvokeResponse) *Result {
	if e := p.GetError(); e != nil {
		return &Result{Err: errorFromProto(e)}
	}
	s := p.GetSuccess()
	return &Result{Response: s.GetResponse(), RawData: s.GetRawData(), Page: pageFromProto(s.GetPage())}
}

func chunkToProto(c *Chunk) *pb.StreamChunk {
	out := &pb.StreamChunk{Ndjson: c.NDJSON}
	if len(c.Items) > 0 {
		buf := append([]byte(nil), c.NDJSON...)
		for _, it := range c.Items {
			buf = append(append(buf, it...), '\n')
		}
		out.Ndjson = buf
	}
	switch {
	case c.Err != nil:
		out.End = &pb.StreamChunk_Error{Error: errorToProto(c.Err)}
	case c.FinalPage != nil:
		out.End = &pb.StreamChunk_FinalPage{FinalPage: pageToProto(c.FinalPage)}
	case c.Done:
		out.End = &pb.StreamChunk_Done{Done: true}
	}
	return out
}

func chunkFromProto(p *pb.StreamChunk) *Chunk {
	c := &Chunk{NDJSON: p.GetNdjson()}
	switch e := p.GetEnd().(type) {
	case *pb.StreamChunk_Error:
		c.Err = errorFromProto(e.Error)
	case *pb.StreamChunk_FinalPage:
		c.FinalPage = pageFromProto(e.FinalPage)
	case *pb.StreamChunk_Done:
		c.Done = e.Done
	}
	return c
}

func headersToProto(h map[string][]string) map[string]*pb.HeaderValues {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]*pb.HeaderValues, len(h))
	for k, v := range h {
		out[k] = &pb.HeaderValues{Values: v}
	}
	return out
}

func headersFromProto(h map[string]*pb.HeaderValues) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[k] = v.GetValues()
	}
	return out
}

func inboundRequestToProto(r *InboundRequest) *pb.InboundRequest {
	return &pb.InboundRequest{
		Method: r.Method, Path: r.Path, RawQuery: r.RawQuery,
		Headers: headersToProto(r.Header), Body: r.Body, Settings: r.Settings,
	}
}

func inboundRequestFromProto(p *pb.InboundRequest) *InboundRequest {
	return &InboundRequest{
		Method: p.GetMethod(), Path: p.GetPath(), RawQuery: p.GetRawQuery(),
		Header: headersFromProto(p.GetHeaders()), Body: p.GetBody(), Settings: p.GetSettings(),
	}
}

func inboundResponseToProto(r *InboundResponse) *pb.InboundResponse {
	return &pb.InboundResponse{Status: saturateInt32(r.Status), Headers: headersToProto(r.Header), Body: r.Body}
}

func inboundResponseFromProto(p *pb.InboundResponse) *InboundResponse {
	return &InboundResponse{Status: int(p.GetStatus()), Header: headersFromProto(p.GetHeaders()), Body: p.GetBody()}
}

func summariesToProto(s []ConnectorSummary) *pb.ListConnectorsResponse {
	out := &pb.ListConnectorsResponse{}
	for _, c := range s {
		out.Connectors = append(out.Connectors, &pb.ConnectorSummary{AppId: c.AppID, Version: c.Version, Capabilities: c.Capabilities})
	}
	return out
}

func summariesFromProto(p *pb.ListConnectorsResponse) []ConnectorSummary {
	var out []ConnectorSummary
	for _, c := range p.GetConnectors() {
		out = append(out, ConnectorSummary{AppID: c.GetAppId(), Version: c.GetVersion(), Capabilities: c.GetCapabilities()})
	}
	return out
}
