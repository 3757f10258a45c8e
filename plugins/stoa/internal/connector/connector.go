// Package connector is the stoa integration of connector-host: the
// capabilities validate_credentials, order, sign, fetch (streaming) and
// export over the Stoa client of package stoa.
package connector

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/invopop/jsonschema"

	"github.com/connector-host/connector-host/plugins/stoa/internal/stoa"
	"github.com/connector-host/connector-host/sdk"
)

// AppID is the connector's app_id.
const AppID = "stoa"

// Version is the connector's version.
const Version = "0.1.0"

// Connector holds what the stoa integration shares between calls: the
// tokens it obtained (REST logins, client-credentials tokens).
type Connector struct {
	tokens *stoa.TokenCache
}

// New returns the stoa integration with its capabilities registered.
func New() *sdk.Integration {
	c := &Connector{tokens: stoa.NewTokenCache()}
	integ := &sdk.Integration{
		AppID:   AppID,
		Version: Version,
		Description: sdk.DescriptionData{
			UserFriendlyName: "Stoa",
			Description: "Stoa data products (port of the Python ds_stoa StoaClient): order the objects of a product, " +
				"sign them, and fetch their Parquet data as a stream of JSON rows or export it as one Parquet, Arrow, CSV or NDJSON file.",
			Categories: []string{"data"},
		},
		// basic: email and password (REST login). oauth: an access token
		// (from the host's OAuth module with a credential_id, or given).
		// oauth_client_credentials: client id and secret; the plugin gets
		// the token itself when the host did not.
		Auth:     []sdk.AuthKind{sdk.AuthBasic, sdk.AuthOAuth, sdk.AuthOAuthClientCredentials},
		Settings: stoa.Settings{},
		// Setup removes download spool files a previous process left.
		Setup: func(_ context.Context, rt sdk.Runtime) error {
			return os.RemoveAll(filepath.Join(rt.DataDir, "spool"))
		},
		OAuth: &sdk.OAuthSettings{
			Flow:             sdk.ClientCredentialsFlow,
			ClientAuth:       sdk.ClientSecretBasic,
			TokenRequestBody: sdk.FormBody,
			TokenURL:         stoa.ProdAuthURL + "/oauth/token/",
		},
	}
	sdk.Register(integ, sdk.ValidateCredentials, c.validateCredentials,
		sdk.WithDescription("Logs in (REST) or gets a client-credentials token and reports success or the mapped error."))
	sdk.Register(integ, "order", c.order,
		sdk.WithDescription("Lists the order ids (object keys) of a data product, one page of at most 20; the page token continues at the next offset."))
	sdk.Register(integ, "sign", c.sign,
		sdk.WithDescription("Returns a presigned download URL per order id."))
	sdk.RegisterStream(integ, "fetch", c.fetch,
		sdk.WithDescription("Streams the rows of the ordered (or given) objects as JSON objects, in order of order ids then row order; "+
			"with allow_partial the stream ends with an error listing the objects that could not be read."))
	sdk.Register(integ, "export", c.export,
		sdk.WithDescription("Writes the rows of the ordered (or given) objects as one Parquet, Arrow IPC, CSV or NDJSON file under the plugin's data dir."))
	return integ
}

// credentials reads the envelope's auth.
func credentials(a sdk.Auth) (stoa.Credentials, error) {
	switch {
	case a.Basic != nil:
		return stoa.Credentials{Email: a.Basic.Username, Password: a.Basic.Password.Reveal()}, nil
	case a.OAuth != nil:
		return stoa.Credentials{AccessToken: a.OAuth.AccessToken.Reveal()}, nil
	case a.OAuthClientCredentials != nil:
		cc := a.OAuthClientCredentials
		if tok := cc.AccessToken.Reveal(); tok != "" {
			return stoa.Credentials{AccessToken: tok}, nil
		}
		return stoa.Credentials{ClientID: cc.ClientID, ClientSecret: cc.ClientSecret.Reveal()}, nil
	}
	return stoa.Credentials{}, sdk.Errorf(sdk.Unauthenticated,
		"auth: give basic (email and password), oauth (an access token) or oauth_client_credentials (client id and secret)")
}

// client builds the call's Stoa client.
func (c *Connector) client(env *sdk.Envelope) (*stoa.Client, error) {
	var s stoa.Settings
	if err := env.DecodeSettings(&s); err != nil {
		return nil, err
	}
	creds, err := credentials(env.Auth)
	if err != nil {
		return nil, err
	}
	spool := filepath.Join(env.DataDir(), "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, sdk.Errorf(sdk.InternalError, "creating the spool directory: %v", err)
	}
	return stoa.New(s, creds, stoa.Options{TokenCache: c.tokens, SpoolDir: spool, Logger: env.Logger()})
}

// applyPage continues an order at the envelope's page token; the page size
// is the limit when the request sets none.
func applyPage(r *stoa.OrderRequest, page *sdk.Page) error {
	if page == nil {
		return nil
	}
	if page.Token != "" {
		off, err := stoa.OffsetFromPageToken(page.Token)
		if err != nil {
			return err
		}
		r.Offset = &off
	}
	if page.Size > 0 && r.Limit == nil {
		size := page.Size
		r.Limit = &size
	}
	return nil
}

// nextPage sets the envelope's next page after an order page of n ids.
func nextPage(env *sdk.Envelope, token string, r stoa.OrderRequest) {
	if token == "" {
		return
	}
	p := sdk.Page{Token: token}
	if n, err := r.Normalized(); err == nil {
		p.Size = *n.Limit
	}
	env.SetNextPage(p)
}

// ValidateRequest is the request of validate_credentials (no arguments).
type ValidateRequest struct{}

// ValidateResponse is the response of validate_credentials.
type ValidateResponse struct {
	Valid bool `json:"valid"`
	// Mode is the authentication used: rest, oauth2_client_credentials or
	// bearer.
	Mode string `json:"mode" jsonschema:"enum=rest,enum=oauth2_client_credentials,enum=bearer"`
	// CheckedWithService tells whether Stoa was asked (not in bearer mode:
	// Stoa has no endpoint to check a token without a product).
	CheckedWithService bool `json:"checked_with_service"`
}

func (c *Connector) validateCredentials(ctx context.Context, req sdk.Request[ValidateRequest]) (ValidateResponse, error) {
	cl, err := c.client(req.Envelope)
	if err != nil {
		return ValidateResponse{}, err
	}
	if err := cl.Validate(ctx); err != nil {
		return ValidateResponse{}, err
	}
	creds, _ := credentials(req.Auth)
	switch {
	case creds.AccessToken != "":
		return ValidateResponse{Valid: true, Mode: "bearer"}, nil
	case creds.ClientID != "":
		return ValidateResponse{Valid: true, Mode: "oauth2_client_credentials", CheckedWithService: true}, nil
	}
	return ValidateResponse{Valid: true, Mode: "rest", CheckedWithService: true}, nil
}

// OrderResponse is the response of order.
type OrderResponse struct {
	OrderIDs []string `json:"order_ids"`
}

func (c *Connector) order(ctx context.Context, req sdk.Request[stoa.OrderRequest]) (OrderResponse, error) {
	r := req.Args
	if err := applyPage(&r, req.Page); err != nil {
		return OrderResponse{}, err
	}
	cl, err := c.client(req.Envelope)
	if err != nil {
		return OrderResponse{}, err
	}
	ids, err := cl.Order(ctx, r)
	if err != nil {
		return OrderResponse{}, err
	}
	n, _ := r.Normalized()
	nextPage(req.Envelope, stoa.NextPageToken(n, len(ids)), r)
	return OrderResponse{OrderIDs: ids}, nil
}

// SignRequest is the request of sign.
type SignRequest struct {
	OrderIDs []string `json:"order_ids" jsonschema:"minItems=1,maxItems=10000"`
}

// SignResponse is the response of sign.
type SignResponse struct {
	// Signatures maps each order id to its presigned download URL.
	Signatures map[string]string `json:"signatures"`
}

func (c *Connector) sign(ctx context.Context, req sdk.Request[SignRequest]) (SignResponse, error) {
	cl, err := c.client(req.Envelope)
	if err != nil {
		return SignResponse{}, err
	}
	sigs, err := cl.Sign(ctx, req.Args.OrderIDs)
	if err != nil {
		return SignResponse{}, err
	}
	return SignResponse{Signatures: sigs}, nil
}

// Row is one fetched row: a JSON object with the columns as keys.
type Row json.RawMessage

// JSONSchema describes a row.
func (Row) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "object", Description: "One row: column name → value (Parquet types mapped to JSON, see the stoa README)"}
}

func (c *Connector) fetch(ctx context.Context, req sdk.Request[stoa.FetchRequest], out *sdk.Stream[Row]) error {
	r := req.Args
	if len(r.OrderIDs) == 0 {
		if err := applyPage(&r.OrderRequest, req.Page); err != nil {
			return err
		}
	}
	cl, err := c.client(req.Envelope)
	if err != nil {
		return err
	}
	res, err := cl.Fetch(ctx, r, func(row json.RawMessage) error { return out.SendRaw(row) })
	if err != nil {
		return err
	}
	if err := res.FailureError(); err != nil {
		return err
	}
	nextPage(req.Envelope, res.NextPageToken, r.OrderRequest)
	return nil
}

func (c *Connector) export(ctx context.Context, req sdk.Request[stoa.ExportRequest]) (*stoa.ExportResult, error) {
	r := req.Args
	if len(r.OrderIDs) == 0 {
		if err := applyPage(&r.OrderRequest, req.Page); err != nil {
			return nil, err
		}
	}
	cl, err := c.client(req.Envelope)
	if err != nil {
		return nil, err
	}
	res, err := cl.Export(ctx, r, req.DataDir())
	if err != nil {
		return nil, err
	}
	nextPage(req.Envelope, res.NextPageToken, r.OrderRequest)
	return res, nil
}
