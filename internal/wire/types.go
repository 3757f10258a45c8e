package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"time"
)

// Connector is the plugin contract: what every plugin serves and what the
// host calls.
type Connector interface {
	// Describe returns the plugin's static description.
	Describe(ctx context.Context) (*Description, error)
	// Invoke runs one unary capability. A failure the plugin reports
	// in-band is in Result.Err; a returned error is a transport failure.
	Invoke(ctx context.Context, call *Call) (*Result, error)
	// InvokeStream runs one streaming capability, handing each chunk to
	// emit in order. The last chunk has End set. emit must not keep the
	// chunk (or its NDJSON) after it returns: the sender may reuse it.
	InvokeStream(ctx context.Context, call *Call, emit func(*Chunk) error) error
	// HandleInbound serves one HTTP request sent to a declared inbound route.
	HandleInbound(ctx context.Context, req *InboundRequest) (*InboundResponse, error)
}

// Callback is what the host offers plugins over the go-plugin broker.
type Callback interface {
	// ListConnectors lists the connectors the calling plugin may reach.
	ListConnectors(ctx context.Context) ([]ConnectorSummary, error)
	// Invoke runs a unary capability of a connector through the host's
	// router. envelope is a JSON request envelope; requestID is the
	// request id of the caller's own call (may be empty).
	Invoke(ctx context.Context, appID, capability, requestID string, envelope []byte) (*Result, error)
}

// Description is a plugin's answer to Describe.
type Description struct {
	AppID          string
	Version        string
	SDKVersion     string
	Info           DescriptionData
	Capabilities   []Capability
	AuthModels     []AuthModel
	SettingsSchema json.RawMessage
	OAuth          *OAuthSettings
	InboundRoutes  []InboundRoute
}

// Capability returns the named capability, if the plugin has it.
func (d *Description) Capability(name string) (Capability, bool) {
	for i := range d.Capabilities { // by index: no copy of every entry
		if d.Capabilities[i].Name == name {
			return d.Capabilities[i], true
		}
	}
	return Capability{}, false
}

// DescriptionData is the human-facing description of a connector.
type DescriptionData struct {
	UserFriendlyName string   `json:"user_friendly_name"`
	Description      string   `json:"description"`
	Categories       []string `json:"categories"`
	LogoURL          string   `json:"logo_url"`
}

// Capability describes one capability and its JSON Schemas.
type Capability struct {
	Name           string
	Description    string
	Streaming      bool
	RequestSchema  json.RawMessage
	ResponseSchema json.RawMessage
}

// AuthModel is one accepted kind of credential and its JSON Schema.
type AuthModel struct {
	Kind   string
	Schema json.RawMessage
}

// OAuth flow types.
const (
	FlowCode              = "CODE_FLOW"
	FlowClientCredentials = "CLIENT_CREDENTIALS" //nolint:gosec // a flow name, not a credential
)

// OAuth client authentication methods.
const (
	ClientSecretPost  = "CLIENT_SECRET_POST"
	ClientSecretBasic = "CLIENT_SECRET_BASIC"
)

// OAuth token request body encodings.
const (
	BodyForm  = "FORMDATA"
	BodyJSON  = "JSON"
	BodyQuery = "QUERY"
)

// OAuthSettings is a plugin's OAuth declaration; the host runs the flows.
type OAuthSettings struct {
	AuthorizationURL     string            `json:"authorization_url"`
	TokenURL             string            `json:"token_url"`
	Scopes               map[string]string `json:"scopes,omitempty"`
	Flow                 string            `json:"flow_type"`
	ClientAuth           string            `json:"client_auth"`
	TokenRequestMethod   string            `json:"token_request_method"`
	TokenRequestBody     string            `json:"token_request_body"`
	PKCE                 bool              `json:"pkce"`
	DisabledCapabilities []string          `json:"disabled_capabilities,omitempty"`
}

// InboundRoute is an HTTP route a plugin serves for upstream callers.
type InboundRoute struct {
	Method      string `json:"method,omitempty"`
	Path        string `json:"path"`
	Description string `json:"description,omitempty"`
}

// Page is a pagination cursor.
type Page struct {
	Token string `json:"token"`
	Size  int    `json:"size,omitempty"`
}

// Call is one capability invocation.
type Call struct {
	Capability     string
	Request        json.RawMessage
	Settings       json.RawMessage
	Auth           json.RawMessage
	Page           *Page
	IncludeRawData bool
	RequestID      string
	// Deadline, when set on a unary call, travels as MetadataDeadline
	// (ADR 0009); the caller enforces it by cancelling the call.
	Deadline time.Time
}

// Result is the outcome of a unary call: Err, or a response.
type Result struct {
	Response json.RawMessage
	RawData  json.RawMessage
	Page     *Page
	Err      *Error
}

// Chunk is a piece of a stream. Items come first; a final chunk has Done,
// FinalPage or Err set.
type Chunk struct {
	// NDJSON holds the chunk's items: each a compact JSON value followed by
	// a newline.
	NDJSON []byte
	// Items, when set by a sender instead of NDJSON, are appended to it on
	// the wire (each must be compact JSON without newlines). Receivers only
	// see NDJSON.
	Items     []json.RawMessage
	FinalPage *Page
	Err       *Error
	Done      bool
}

// End reports whether c is the final chunk of its stream.
func (c *Chunk) End() bool { return c.Done || c.FinalPage != nil || c.Err != nil }

// Lines returns the chunk's items (sub-slices of NDJSON, no copies).
func (c *Chunk) Lines() []json.RawMessage {
	if len(c.NDJSON) == 0 {
		return c.Items
	}
	n := bytes.Count(c.NDJSON, newline)
	out := make([]json.RawMessage, 0, n+len(c.Items))
	rest := c.NDJSON
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			out = append(out, rest)
			break
		}
		out = append(out, rest[:i])
		rest = rest[i+1:]
	}
	return append(out, c.Items...)
}

var newline = []byte{'\n'}

// Error is a failure reported in-band by a plugin (or produced by the host).
type Error struct {
	Code         string
	AppErrorCode string
	Message      string
	RaisedBy     string
	RaisedIn     string
	Retryable    bool
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// InboundRequest is an HTTP request forwarded to a plugin.
type InboundRequest struct {
	Method   string
	Path     string
	RawQuery string
	Header   map[string][]string
	Body     []byte
	Settings json.RawMessage
}

// InboundResponse is a plugin's answer to an InboundRequest.
type InboundResponse struct {
	Status int
	Header map[string][]string
	Body   []byte
}

// ConnectorSummary names a connector and its capabilities.
type ConnectorSummary struct {
	AppID        string
	Version      string
	Capabilities []string
}
