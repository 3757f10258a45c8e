package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"runtime"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/internal/wire"
)

// Standard capability names (SPEC "Capabilities"). Custom capabilities are
// any other snake_case name.
const (
	AppInfo                        = "app_info"
	ValidateCredentials            = "validate_credentials" //nolint:gosec // a capability name, not a credential
	ListAccounts                   = "list_accounts"
	GetAccount                     = "get_account"
	CreateAccount                  = "create_account"
	UpdateAccount                  = "update_account"
	DeleteAccount                  = "delete_account"
	ActivateAccount                = "activate_account"
	DeactivateAccount              = "deactivate_account"
	ListResources                  = "list_resources"
	ListEntitlements               = "list_entitlements"
	AssignEntitlement              = "assign_entitlement"
	UnassignEntitlement            = "unassign_entitlement"
	FindEntitlementAssociations    = "find_entitlement_associations"
	GetLastActivity                = "get_last_activity"
	GetAuthorizationURL            = "get_authorization_url"
	HandleAuthorizationCallback    = "handle_authorization_callback"
	RefreshAccessToken             = "refresh_access_token"
	HandleClientCredentialsRequest = "handle_client_credentials_request"
)

// StandardCapabilities lists the standard capability names.
func StandardCapabilities() []string {
	return []string{
		AppInfo, ValidateCredentials, ListAccounts, GetAccount, CreateAccount, UpdateAccount,
		DeleteAccount, ActivateAccount, DeactivateAccount, ListResources, ListEntitlements,
		AssignEntitlement, UnassignEntitlement, FindEntitlementAssociations, GetLastActivity,
		GetAuthorizationURL, HandleAuthorizationCallback, RefreshAccessToken,
		HandleClientCredentialsRequest,
	}
}

// capabilityName is the pattern of every capability name.
var capabilityName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Request is what a capability handler receives: its typed arguments (the
// envelope's "request" object, already validated against Args' schema) and
// the rest of the envelope.
type Request[T any] struct {
	Args T
	*Envelope
}

// Envelope is the part of a call that is the same for every capability:
// settings, auth, paging and per-call services.
type Envelope struct {
	// Settings is the JSON of the effective settings, validated against the
	// integration's Settings type. Use DecodeSettings to read it.
	Settings json.RawMessage
	// Auth holds the caller's credentials (validated).
	Auth Auth
	// Page is the caller's paging cursor, nil on a first page.
	Page *Page
	// IncludeRawData asks for the upstream data as raw_data.
	IncludeRawData bool
	// RequestID identifies the call in host and plugin logs.
	RequestID string

	integ    *Integration
	logger   hclog.Logger
	nextPage *Page
	rawData  any
}

// Page is a paging cursor: the token of the next page and a page size.
type Page struct {
	Token string `json:"token"`
	Size  int    `json:"size,omitempty"`
}

// DecodeSettings decodes the call's settings into v, a pointer to the
// integration's Settings type. Fields absent from the settings keep the
// values v already has, so defaults can be set before the call.
func (e *Envelope) DecodeSettings(v any) error {
	if len(e.Settings) == 0 {
		return nil
	}
	if err := json.Unmarshal(e.Settings, v); err != nil {
		return Errorf(BadRequest, "settings: %v", err)
	}
	return nil
}

// SetNextPage sets the page the caller should ask for next.
func (e *Envelope) SetNextPage(p Page) { e.nextPage = &p }

// SetRawData attaches upstream data to the response when the caller asked
// for it (IncludeRawData); otherwise it does nothing.
func (e *Envelope) SetRawData(v any) {
	if e.IncludeRawData {
		e.rawData = v
	}
}

// Logger returns the call's logger (hclog, JSON on stderr, credentials
// redacted), tagged with the capability and request id.
func (e *Envelope) Logger() hclog.Logger { return e.logger }

// DataDir is the plugin's private data directory (created on start).
func (e *Envelope) DataDir() string { return e.integ.DataDir() }

// Handler is a unary capability handler.
type Handler[Req, Resp any] func(ctx context.Context, req Request[Req]) (Resp, error)

// StreamHandler is a streaming capability handler: it sends items to out
// and returns nil (the stream ends with a final page, see
// Envelope.SetNextPage) or an error (the stream ends with an error line).
type StreamHandler[Req, Item any] func(ctx context.Context, req Request[Req], out *Stream[Item]) error

// capability is one registered capability, type-erased.
type capability struct {
	name        string
	description string
	streaming   bool
	reqType     reflect.Type
	respType    reflect.Type
	funcName    string
	// unary runs a unary handler on a decoded request.
	unary func(ctx context.Context, args json.RawMessage, env *Envelope) (any, error)
	// stream runs a streaming handler.
	stream func(ctx context.Context, args json.RawMessage, env *Envelope, out streamSink) error

	reqSchema  *schema
	respSchema *schema
}

// Option configures a capability at registration.
type Option func(*capability)

// WithDescription sets the capability's description (shown in info and
// OpenAPI).
func WithDescription(text string) Option { return func(c *capability) { c.description = text } }

// Register adds a unary capability to integ. Req is the type of the
// envelope's "request" object, Resp the type of the response. Schemas are
// generated from both. An invalid or duplicate name is reported by Serve
// (and Integration.Validate) at start-up.
func Register[Req, Resp any](integ *Integration, name string, fn Handler[Req, Resp], opts ...Option) {
	c := &capability{
		name:     name,
		reqType:  reflect.TypeFor[Req](),
		respType: reflect.TypeFor[Resp](),
		funcName: funcName(fn),
		unary: func(ctx context.Context, args json.RawMessage, env *Envelope) (any, error) {
			var req Request[Req]
			req.Envelope = env
			if err := json.Unmarshal(args, &req.Args); err != nil {
				return nil, Errorf(BadRequest, "request: %v", err)
			}
			return fn(ctx, req)
		},
	}
	for _, o := range opts {
		o(c)
	}
	integ.add(c)
}

// RegisterStream adds a streaming capability to integ: the handler sends
// any number of Items, then the stream ends with a final page or an error.
func RegisterStream[Req, Item any](integ *Integration, name string, fn StreamHandler[Req, Item], opts ...Option) {
	c := &capability{
		name:      name,
		streaming: true,
		reqType:   reflect.TypeFor[Req](),
		respType:  reflect.TypeFor[Item](),
		funcName:  funcName(fn),
		stream: func(ctx context.Context, args json.RawMessage, env *Envelope, out streamSink) error {
			var req Request[Req]
			req.Envelope = env
			if err := json.Unmarshal(args, &req.Args); err != nil {
				return Errorf(BadRequest, "request: %v", err)
			}
			return fn(ctx, req, &Stream[Item]{ctx: ctx, out: out})
		},
	}
	for _, o := range opts {
		o(c)
	}
	integ.add(c)
}

// Stream is where a streaming handler sends its items.
type Stream[T any] struct {
	ctx context.Context
	out streamSink
}

// streamSink takes a stream's items (the batcher towards the host).
type streamSink interface {
	add(item json.RawMessage) error
	open() error
}

// Open tells the caller that the stream is established before its first
// item: the HTTP caller gets 200 and the response headers now, so a quiet
// stream (a subscription waiting for events) is seen open. Until the first
// item or Open, an error ends the call with its own status (401, 404, ...);
// after, it ends the stream as its final line. Call Open once the stream's
// setup (login, subscribe, ...) has succeeded; sending an item does it too.
func (s *Stream[T]) Open() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	return s.out.open()
}

// Send sends one item. It returns an error when the caller has gone away or
// the item cannot be encoded; the handler should then return.
func (s *Stream[T]) Send(item T) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	b, err := json.Marshal(item)
	if err != nil {
		return Errorf(InternalError, "encoding stream item: %v", err)
	}
	return s.out.add(b)
}

// SendRaw sends one item that is already JSON. The caller guarantees that
// raw is a valid JSON value matching the item schema.
func (s *Stream[T]) SendRaw(raw json.RawMessage) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	return s.out.add(raw)
}

func funcName(fn any) string {
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return ""
	}
	return shortFuncName(f.Name())
}

// toWirePage converts a Page.
func toWirePage(p *Page) *wire.Page {
	if p == nil {
		return nil
	}
	return &wire.Page{Token: p.Token, Size: p.Size}
}

func fromWirePage(p *wire.Page) *Page {
	if p == nil {
		return nil
	}
	return &Page{Token: p.Token, Size: p.Size}
}

func (c *capability) String() string {
	kind := "unary"
	if c.streaming {
		kind = "streaming"
	}
	return fmt.Sprintf("%s (%s)", c.name, kind)
}
