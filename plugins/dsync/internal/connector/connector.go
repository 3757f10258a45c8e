// Package connector is the dsync integration: DSYNC realtime
// create/update/delete and batches, data layout and entity token
// generation, credential checks, and the inbound API the DSYNC platform
// calls (data layout and entity endpoints, records kept in SQLite in the
// plugin's data directory).
package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/invopop/jsonschema"
	"golang.org/x/net/http/httpguts"

	"github.com/connector-host/connector-host/plugins/dsync/internal/layout"
	"github.com/connector-host/connector-host/plugins/dsync/internal/realtime"
	"github.com/connector-host/connector-host/sdk"
)

// AppID is the connector's app_id.
const AppID = "dsync"

// Settings are the dsync connector's settings.
type Settings struct {
	RealtimeEndpoint string `json:"realtime_endpoint,omitempty" jsonschema:"description=DSYNC realtime API URL (default https://api.dsync.com/api/realtime)"`
	// DataLayout is the data layout: {"data_layout":[...]} or an array of
	// entities, or a string naming a JSON file holding one.
	DataLayout    any        `json:"data_layout,omitempty" jsonschema:"description=The data layout ({\"data_layout\":[...]} or an array of entities) or the path of a JSON file holding it"`
	InboundAPIKey sdk.Secret `json:"inbound_api_key,omitempty" jsonschema:"description=The key the DSYNC platform sends in Auth-Token when it calls the connector's inbound API"`
}

// Record is a record as the caller wrote it: a JSON object sent to the
// platform as is (compacted), so that numbers keep every digit (a decoded
// map would round integers above 2^53 and rewrite 1e21 as 1e+21) and the
// keys keep their order.
type Record json.RawMessage

// MarshalJSON returns the record's JSON.
func (r Record) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps a copy of the JSON value.
func (r *Record) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// JSONSchema describes a record: any JSON object.
func (Record) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "object", Description: "The record: a JSON object, sent to the platform as the request body unwrapped"}
}

// body returns the record compacted for the request body, or an error
// naming field when it is missing or not a JSON object.
func (r Record) body(field string) ([]byte, error) {
	var buf bytes.Buffer
	if len(r) == 0 || string(r) == "null" {
		return nil, sdk.Errorf(sdk.BadRequest, "%s: the record is required", field)
	}
	// A record without any white space byte is already compact: it is sent
	// as is, without a second copy (the common case of a batch).
	if r[0] == '{' && !bytes.ContainsAny(r, " \t\r\n") && json.Valid(r) {
		return r, nil
	}
	if err := json.Compact(&buf, r); err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "%s: %v", field, err)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, sdk.Errorf(sdk.BadRequest, "%s: the record must be a JSON object", field)
	}
	return buf.Bytes(), nil
}

// RecordRequest is the request of realtime_create and realtime_update.
type RecordRequest struct {
	EntityToken string `json:"entity_token" jsonschema:"minLength=1,description=Entity token from the data layout" jsonschema_extras:"x-secret=false"`
	Data        Record `json:"data" jsonschema:"description=The record (sent as the request body unwrapped and unchanged)"`
}

// DeleteRequest is the request of realtime_delete.
type DeleteRequest struct {
	EntityToken string `json:"entity_token" jsonschema:"minLength=1" jsonschema_extras:"x-secret=false"`
	EntityID    string `json:"entity_id" jsonschema:"minLength=1,description=The record's primary key value"`
}

// BatchOperation is one operation of realtime_batch.
type BatchOperation struct {
	Op          string `json:"op" jsonschema:"enum=create,enum=update,enum=delete"`
	EntityToken string `json:"entity_token" jsonschema:"minLength=1" jsonschema_extras:"x-secret=false"`
	Data        Record `json:"data,omitempty" jsonschema:"description=The record (create and update)"`
	EntityID    string `json:"entity_id,omitempty" jsonschema:"description=The record's primary key (delete; optional for create and update: the data layout's primary key is used)"`
}

// BatchRequest is the request of realtime_batch.
type BatchRequest struct {
	Operations  []BatchOperation `json:"operations" jsonschema:"maxItems=100000"`
	Concurrency int              `json:"concurrency,omitempty" jsonschema:"minimum=0,maximum=256,description=Requests in flight (default 8)"`
}

// BatchError is a failed operation's error.
type BatchError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable,omitempty"`
}

// BatchResult is the outcome of one batch operation.
type BatchResult struct {
	Index  int              `json:"index"`
	OK     bool             `json:"ok"`
	Result *realtime.Result `json:"result,omitempty"`
	Error  *BatchError      `json:"error,omitempty"`
}

// BatchResponse is the response of realtime_batch.
type BatchResponse struct {
	Results   []BatchResult `json:"results"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
}

// FieldInput is a data layout field as given to generate_data_layout; only
// treekey, type and name are required (checked by Generate, which reports
// every violation with its path).
type FieldInput struct {
	ID           string   `json:"id,omitempty"`
	Treekey      string   `json:"treekey,omitempty"`
	Value        string   `json:"value,omitempty"`
	Type         string   `json:"type,omitempty"`
	Multiple     bool     `json:"multiple,omitempty"`
	DateFormat   string   `json:"date_format,omitempty"`
	Required     bool     `json:"required,omitempty"`
	Functions    []string `json:"functions,omitempty"`
	PrimaryKey   bool     `json:"primary_key,omitempty"`
	ForeignKey   string   `json:"foreign_key,omitempty"`
	BoolSettings string   `json:"bool_settings,omitempty"`
	Name         string   `json:"name,omitempty"`
	Description  string   `json:"description,omitempty"`
}

// EntityInput is a data layout entity as given to generate_data_layout.
type EntityInput struct {
	EntityName  string       `json:"entity_name,omitempty"`
	Treekey     string       `json:"treekey,omitempty"`
	EndpointURL string       `json:"endpoint_url,omitempty"`
	EntityToken string       `json:"entity_token,omitempty" jsonschema_extras:"x-secret=false"`
	Fields      []FieldInput `json:"fields,omitempty"`
}

// GenerateLayoutRequest is the request of generate_data_layout.
type GenerateLayoutRequest struct {
	Entities []EntityInput `json:"entities"`
}

// TokenRequest is the request of generate_entity_token.
type TokenRequest struct {
	EntityName string `json:"entity_name" jsonschema:"minLength=1"`
}

// TokenResponse is the response of generate_entity_token.
type TokenResponse struct {
	EntityToken string `json:"entity_token" jsonschema:"pattern=^\\S+-[0-9a-f]{32}$,description=The entity name lowercased without white space\\, a hyphen and 32 random hex digits" jsonschema_extras:"x-secret=false"`
}

// ValidateRequest is the request of validate_credentials.
type ValidateRequest struct {
	// Probe asks the platform with a request: a DELETE of a record that
	// cannot exist (entity token "connector-host-credential-check"); 401
	// means a bad key, any other answer a good one.
	Probe bool `json:"probe,omitempty" jsonschema:"description=Also check the key with a harmless request to the platform"`
}

// ValidateResponse is the response of validate_credentials.
type ValidateResponse struct {
	Valid              bool `json:"valid"`
	CheckedWithService bool `json:"checked_with_service"`
}

// Connector holds what the dsync integration shares between calls.
type Connector struct {
	httpClient *http.Client

	mu      sync.Mutex
	layouts map[[32]byte]*cachedLayout

	inbound *inboundState
}

type cachedLayout struct {
	layout  *layout.Layout
	schemas map[string]*layout.RecordSchema
}

// New returns the dsync integration with its capabilities registered.
func New() *sdk.Integration {
	c := &Connector{httpClient: realtime.NewHTTPClient(realtime.MaxConcurrency), layouts: map[[32]byte]*cachedLayout{}}
	integ := &sdk.Integration{
		AppID:   AppID,
		Version: "1.0.0",
		Description: sdk.DescriptionData{
			UserFriendlyName: "DSYNC",
			Description:      "Pushes record changes to the DSYNC platform in near real time and serves the data layout and entity endpoints DSYNC calls.",
			Categories:       []string{"data-sync"},
		},
		Auth:     []sdk.AuthKind{sdk.AuthToken},
		Settings: Settings{},
	}
	c.inbound = newInboundState(integ.DataDir, sdk.InboundSettings)
	integ.Inbound = c.inbound
	integ.InboundRoutes = InboundRoutes()
	integ.Shutdown = func(context.Context) error { return c.inbound.Close() }
	sdk.Register(integ, "realtime_create", c.realtimeCreate, sdk.WithDescription("Sends a new record to DSYNC (POST)."))
	sdk.Register(integ, "realtime_update", c.realtimeUpdate, sdk.WithDescription("Sends a changed record to DSYNC (PUT)."))
	sdk.Register(integ, "realtime_delete", c.realtimeDelete, sdk.WithDescription("Deletes a record at DSYNC (DELETE with Entity-Id)."))
	sdk.Register(integ, "realtime_batch", c.realtimeBatch, sdk.WithDescription("Runs many realtime operations with bounded concurrency, keeping the order of operations on one record."))
	sdk.Register(integ, "generate_data_layout", generateDataLayout, sdk.WithDescription("Builds the data layout JSON, enforcing every DSYNC layout rule."))
	sdk.Register(integ, "generate_entity_token", generateEntityToken, sdk.WithDescription("Generates an entity token: the lowercase entity name without spaces and 32 random hex digits."))
	sdk.Register(integ, sdk.ValidateCredentials, c.validateCredentials, sdk.WithDescription("Checks the API key's form and, with probe, against the platform."))
	return integ
}

// InboundRoutes are the routes the connector declares: the data layout and,
// since entity endpoints come from the data_layout setting, the whole
// subtree for each method.
func InboundRoutes() []sdk.InboundRoute {
	return []sdk.InboundRoute{
		{Method: http.MethodGet, Path: "/datalayout", Description: "The connector's data layout."},
		{Method: http.MethodGet, Path: "/...", Description: "Entity endpoints: list (?limit=&cursor=) and get one ({endpoint}/{id})."},
		{Method: http.MethodPost, Path: "/...", Description: "Entity endpoints: create a record."},
		{Method: http.MethodPut, Path: "/...", Description: "Entity endpoints: replace a record ({endpoint}/{id})."},
		{Method: http.MethodDelete, Path: "/...", Description: "Entity endpoints: delete a record ({endpoint}/{id})."},
	}
}

func (c *Connector) client(env *sdk.Envelope) (*realtime.Client, *cachedLayout, error) {
	var s Settings
	if err := env.DecodeSettings(&s); err != nil {
		return nil, nil, err
	}
	if env.Auth.Token == nil {
		return nil, nil, sdk.Errorf(sdk.Unauthenticated, "auth.token: the DSYNC API key is required")
	}
	var cl *cachedLayout
	if s.DataLayout != nil {
		var err error
		if cl, err = c.layoutFor(s.DataLayout); err != nil {
			return nil, nil, err
		}
	}
	cfg := realtime.Config{Endpoint: s.RealtimeEndpoint, APIKey: env.Auth.Token.Token.Reveal(), HTTPClient: c.httpClient}
	if cl != nil {
		cfg.IDFunc = cl.recordID
	}
	rc, err := realtime.New(cfg)
	return rc, cl, err
}

// layoutFor parses (and caches) the data_layout setting.
func (c *Connector) layoutFor(setting any) (*cachedLayout, error) {
	raw, err := json.Marshal(setting)
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "settings.data_layout: %v", err)
	}
	sum := sha256.Sum256(raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.layouts[sum]; ok {
		return cl, nil
	}
	l, err := layout.FromSetting(raw)
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "settings.data_layout: %w", err)
	}
	cl := &cachedLayout{layout: l}
	if schemas, err := l.Schemas(); err == nil {
		cl.schemas = schemas
	}
	if len(c.layouts) >= 16 {
		clear(c.layouts)
	}
	c.layouts[sum] = cl
	return cl, nil
}

// recordID is the record's primary key per the layout, or "".
func (cl *cachedLayout) recordID(entityToken string, data json.RawMessage) string {
	s := cl.schemas[entityToken]
	if s == nil {
		return ""
	}
	_, path := s.PrimaryKey()
	var rec any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if dec.Decode(&rec) != nil {
		return ""
	}
	for _, seg := range path {
		m, ok := rec.(map[string]any)
		if !ok {
			return ""
		}
		rec = m[seg]
	}
	switch v := rec.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// checkEntity rejects entity tokens the configured layout does not have.
func checkEntity(cl *cachedLayout, token string) error {
	if cl == nil {
		return nil
	}
	if _, ok := cl.layout.Entity(token); !ok {
		return sdk.Errorf(sdk.BadRequest, "entity_token: %q is not in the configured data layout", token)
	}
	return nil
}

func (c *Connector) realtimeCreate(ctx context.Context, req sdk.Request[RecordRequest]) (realtime.Result, error) {
	return c.record(ctx, req, realtime.OpCreate)
}

func (c *Connector) realtimeUpdate(ctx context.Context, req sdk.Request[RecordRequest]) (realtime.Result, error) {
	return c.record(ctx, req, realtime.OpUpdate)
}

func (c *Connector) record(ctx context.Context, req sdk.Request[RecordRequest], kind realtime.Kind) (realtime.Result, error) {
	rc, cl, err := c.client(req.Envelope)
	if err != nil {
		return realtime.Result{}, err
	}
	if err := checkEntity(cl, req.Args.EntityToken); err != nil {
		return realtime.Result{}, err
	}
	data, err := req.Args.Data.body("data")
	if err != nil {
		return realtime.Result{}, err
	}
	return rc.Do(ctx, realtime.Op{Op: kind, EntityToken: req.Args.EntityToken, Data: data})
}

func (c *Connector) realtimeDelete(ctx context.Context, req sdk.Request[DeleteRequest]) (realtime.Result, error) {
	rc, cl, err := c.client(req.Envelope)
	if err != nil {
		return realtime.Result{}, err
	}
	if err := checkEntity(cl, req.Args.EntityToken); err != nil {
		return realtime.Result{}, err
	}
	return rc.Delete(ctx, req.Args.EntityToken, req.Args.EntityID)
}

func (c *Connector) realtimeBatch(ctx context.Context, req sdk.Request[BatchRequest]) (BatchResponse, error) {
	rc, cl, err := c.client(req.Envelope)
	if err != nil {
		return BatchResponse{}, err
	}
	ops := make([]realtime.Op, len(req.Args.Operations))
	pre := make([]error, len(ops))
	for i, o := range req.Args.Operations {
		ops[i] = realtime.Op{Op: realtime.Kind(o.Op), EntityToken: o.EntityToken, EntityID: o.EntityID}
		if len(o.Data) > 0 && o.Op != string(realtime.OpDelete) {
			if ops[i].Data, err = o.Data.body("data"); err != nil {
				pre[i] = operationError(i, err)
				continue
			}
		}
		// The client's own checks (op, entity_token, entity_id, data) and
		// the layout's, named like the request's fields.
		if err := ops[i].Check(); err != nil {
			pre[i] = operationError(i, err)
		} else if err := checkEntity(cl, o.EntityToken); err != nil {
			pre[i] = operationError(i, err)
		}
	}
	// Operations that failed the checks are left out of the batch.
	var run []realtime.Op
	var runIdx []int
	for i, op := range ops {
		if pre[i] == nil {
			run = append(run, op)
			runIdx = append(runIdx, i)
		}
	}
	out := BatchResponse{Results: make([]BatchResult, len(ops))}
	for i := range ops {
		out.Results[i].Index = i
		if pre[i] != nil {
			out.Results[i].Error = batchError(pre[i])
		}
	}
	for j, r := range rc.Batch(ctx, run, req.Args.Concurrency) {
		i := runIdx[j]
		if r.Err != nil {
			out.Results[i].Error = batchError(r.Err)
			continue
		}
		res := r.Result
		out.Results[i].OK, out.Results[i].Result = true, &res
	}
	for _, r := range out.Results {
		if r.OK {
			out.Succeeded++
		} else {
			out.Failed++
		}
	}
	return out, nil
}

// operationError names operation i's field in a check's error:
// "entity_id: is required for delete" → "operations[2].entity_id: is
// required for delete".
func operationError(i int, err error) error {
	var se *sdk.Error
	if !errors.As(err, &se) {
		return sdk.Errorf(sdk.BadRequest, "operations[%d]: %v", i, err)
	}
	e := *se
	e.Message = fmt.Sprintf("operations[%d].%s", i, se.Message)
	return &e
}

func batchError(err error) *BatchError {
	var se *sdk.Error
	if errors.As(err, &se) {
		return &BatchError{Code: string(se.Code), Message: se.Message, Retryable: se.Retryable}
	}
	return &BatchError{Code: string(sdk.UnexpectedError), Message: err.Error()}
}

func generateDataLayout(_ context.Context, req sdk.Request[GenerateLayoutRequest]) (*layout.Layout, error) {
	entities := make([]layout.Entity, len(req.Args.Entities))
	for i, e := range req.Args.Entities {
		entities[i] = layout.Entity{EntityName: e.EntityName, Treekey: e.Treekey, EndpointURL: e.EndpointURL, EntityToken: e.EntityToken}
		for _, f := range e.Fields {
			entities[i].Fields = append(entities[i].Fields, layout.Field{
				ID: f.ID, Treekey: f.Treekey, Value: f.Value, Type: layout.FieldType(f.Type), Multiple: f.Multiple,
				DateFormat: f.DateFormat, Required: f.Required, Functions: f.Functions, PrimaryKey: f.PrimaryKey,
				ForeignKey: f.ForeignKey, BoolSettings: f.BoolSettings, Name: f.Name, Description: f.Description,
			})
		}
	}
	l, err := layout.Generate(entities)
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "%w", err)
	}
	return l, nil
}

func generateEntityToken(_ context.Context, req sdk.Request[TokenRequest]) (TokenResponse, error) {
	tok, err := layout.GenerateEntityToken(req.Args.EntityName)
	if err != nil {
		return TokenResponse{}, sdk.Errorf(sdk.BadRequest, "%w", err)
	}
	return TokenResponse{EntityToken: tok}, nil
}

// probeEntityToken is the entity token of validate_credentials' probe.
const probeEntityToken = "connector-host-credential-check"

func (c *Connector) validateCredentials(ctx context.Context, req sdk.Request[ValidateRequest]) (ValidateResponse, error) {
	if req.Auth.Token == nil {
		return ValidateResponse{}, sdk.Errorf(sdk.Unauthenticated, "auth.token: the DSYNC API key is required")
	}
	key := req.Auth.Token.Token.Reveal()
	switch {
	case strings.TrimSpace(key) != key || strings.ContainsAny(key, " \t"):
		return ValidateResponse{}, sdk.Errorf(sdk.InvalidValue, "auth.token: the API key must not contain white space")
	case !httpguts.ValidHeaderFieldValue(key):
		return ValidateResponse{}, sdk.Errorf(sdk.InvalidValue, "auth.token: the API key contains characters not allowed in a header")
	}
	if !req.Args.Probe {
		return ValidateResponse{Valid: true}, nil
	}
	rc, _, err := c.client(req.Envelope)
	if err != nil {
		return ValidateResponse{}, err
	}
	_, err = rc.Delete(ctx, probeEntityToken, "0")
	var se *sdk.Error
	switch {
	case err == nil:
		return ValidateResponse{Valid: true, CheckedWithService: true}, nil
	case errors.As(err, &se) && se.Code == sdk.Unauthorized:
		return ValidateResponse{}, sdk.Errorf(sdk.Unauthorized, "auth.token: the platform rejected the API key")
	case errors.As(err, &se) && (se.Code == sdk.NotFound || se.Code == sdk.BadRequest || se.Code == sdk.Conflict):
		// The platform accepted the key and refused only the probe record.
		return ValidateResponse{Valid: true, CheckedWithService: true}, nil
	}
	return ValidateResponse{}, fmt.Errorf("validate_credentials: %w", err)
}
