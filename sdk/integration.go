package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/internal/wire"
)

// Version is the version of this SDK, reported to the host in Describe.
const Version = "1.0.0"

// appIDPattern is the pattern of an app_id: lowercase words joined by "-".
var appIDPattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// semverPattern accepts semantic versions (2.0.0), with pre-release and
// build metadata.
var semverPattern = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// DescriptionData is the human-facing description of a connector.
type DescriptionData struct {
	UserFriendlyName string
	Description      string
	Categories       []string
	LogoURL          string
}

// Integration is a connector: its identity, what it accepts, and its
// capabilities. Build one as a struct literal, register capabilities with
// Register and RegisterStream, then call Serve.
type Integration struct {
	// AppID identifies the connector: lowercase words joined by "-"
	// (e.g. "events-protocol"). The plugin binary is connector-<AppID>.
	AppID string
	// Version is the connector's semantic version.
	Version string
	// Description is shown in info and the host's connector listing.
	Description DescriptionData
	// Auth lists the credential kinds the connector accepts. Empty means
	// the connector takes no credentials; a request carrying another kind
	// is refused with bad_request.
	Auth []AuthKind
	// Settings is a value of the connector's settings struct type (e.g.
	// Settings{}); its JSON Schema is published and every request's
	// settings are validated against it. Nil accepts any settings object.
	Settings any
	// OAuth, when set, declares the connector's OAuth flows; the host runs
	// them (see OAuthSettings).
	OAuth *OAuthSettings
	// ErrorHandlers map errors returned by handlers to codes, tried in
	// order after *Error and before the SDK's defaults (HTTPErrors, context
	// and network errors). Anything unmapped is unexpected_error.
	ErrorHandlers []ErrorHandler
	// Inbound, when set, serves HTTP requests that upstream systems send to
	// the routes in InboundRoutes (the host serves them under
	// /v1/inbound/{app_id}/).
	Inbound http.Handler
	// InboundRoutes declares the inbound routes.
	InboundRoutes []InboundRoute
	// Setup, when set, runs once when the plugin process starts, before it
	// serves calls.
	Setup func(ctx context.Context, rt Runtime) error
	// Shutdown, when set, runs once when the host stops the plugin.
	Shutdown func(ctx context.Context) error
	// Logger overrides the plugin logger (default: hclog JSON on stderr,
	// with credentials redacted).
	Logger hclog.Logger

	caps    map[string]*capability
	order   []string
	regErrs []error

	buildOnce   sync.Once
	buildErr    error
	desc        *wire.Description
	settings    *schema
	authSchema  *schema
	authAllowed map[AuthKind]bool
	dataDir     string
	callback    callbackHolder
}

// Runtime is what Setup receives.
type Runtime struct {
	// DataDir is the plugin's private data directory.
	DataDir string
	// Logger is the plugin logger.
	Logger hclog.Logger
}

// InboundRoute declares an HTTP route the plugin serves for upstream
// systems. Path is relative to /v1/inbound/{app_id}; a trailing "/..."
// matches a whole subtree.
type InboundRoute struct {
	Method      string
	Path        string
	Description string
}

func (i *Integration) add(c *capability) {
	if i.caps == nil {
		i.caps = map[string]*capability{}
	}
	switch {
	case !capabilityName.MatchString(c.name):
		i.regErrs = append(i.regErrs, fmt.Errorf("capability %q: name must be snake_case ([a-z][a-z0-9_]*)", c.name))
		return
	case i.caps[c.name] != nil:
		i.regErrs = append(i.regErrs, fmt.Errorf("capability %q: registered twice", c.name))
		return
	}
	i.caps[c.name] = c
	i.order = append(i.order, c.name)
}

// Validate checks the integration and everything registered on it, and
// generates and compiles every schema. Serve calls it and refuses to start
// on an error; tests can call it directly.
func (i *Integration) Validate() error {
	i.buildOnce.Do(func() { i.buildErr = i.build() })
	return i.buildErr
}

func (i *Integration) build() error {
	var errs []error
	errs = append(errs, i.regErrs...)
	if !appIDPattern.MatchString(i.AppID) {
		errs = append(errs, fmt.Errorf("app_id %q: must be lowercase words joined by '-' (e.g. acme or acme-crm)", i.AppID))
	}
	if !semverPattern.MatchString(i.Version) {
		errs = append(errs, fmt.Errorf("version %q: must be a semantic version like 1.2.3", i.Version))
	}
	if strings.TrimSpace(i.Description.Description) == "" {
		errs = append(errs, errors.New("description: must not be empty"))
	}
	if len(i.caps) == 0 {
		errs = append(errs, errors.New("no capabilities registered"))
	}
	if i.OAuth != nil {
		if err := i.OAuth.validate(i.caps); err != nil {
			errs = append(errs, err)
		}
	}
	i.authAllowed = map[AuthKind]bool{}
	for _, k := range i.Auth {
		if _, ok := authSchemaTypes[k]; !ok {
			errs = append(errs, fmt.Errorf("auth: unknown credential kind %q", k))
		}
		i.authAllowed[k] = true
	}
	for _, r := range i.InboundRoutes {
		if !strings.HasPrefix(r.Path, "/") {
			errs = append(errs, fmt.Errorf("inbound route %q: path must start with /", r.Path))
		}
	}
	if len(i.InboundRoutes) > 0 && i.Inbound == nil {
		errs = append(errs, errors.New("inbound routes declared without an Inbound handler"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	desc := &wire.Description{
		AppID:      i.AppID,
		Version:    i.Version,
		SDKVersion: Version,
		Info: wire.DescriptionData{
			UserFriendlyName: i.Description.UserFriendlyName,
			Description:      i.Description.Description,
			Categories:       i.Description.Categories,
			LogoURL:          i.Description.LogoURL,
		},
	}
	for _, name := range i.order {
		c := i.caps[name]
		var err error
		if c.reqSchema, err = schemaFor(name+".request", c.reqType); err != nil {
			errs = append(errs, fmt.Errorf("capability %q request: %w", name, err))
			continue
		}
		if c.respSchema, err = schemaFor(name+".response", c.respType); err != nil {
			errs = append(errs, fmt.Errorf("capability %q response: %w", name, err))
			continue
		}
		desc.Capabilities = append(desc.Capabilities, wire.Capability{
			Name: name, Description: c.description, Streaming: c.streaming,
			RequestSchema: c.reqSchema.raw, ResponseSchema: c.respSchema.raw,
		})
	}
	if i.Settings != nil {
		s, err := schemaFor("settings", reflect.TypeOf(i.Settings))
		if err != nil {
			errs = append(errs, fmt.Errorf("settings: %w", err))
		} else {
			i.settings = s
			desc.SettingsSchema = s.raw
		}
	}
	authSchema, models, err := buildAuthSchema(i.Auth)
	if err != nil {
		errs = append(errs, err)
	}
	i.authSchema = authSchema
	desc.AuthModels = models
	if i.OAuth != nil {
		desc.OAuth = i.OAuth.toWire()
	}
	for _, r := range i.InboundRoutes {
		desc.InboundRoutes = append(desc.InboundRoutes, wire.InboundRoute{Method: strings.ToUpper(r.Method), Path: r.Path, Description: r.Description})
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	i.desc = desc
	return nil
}

// buildAuthSchema compiles the schema of the envelope's auth object,
// restricted to the declared kinds, and returns each kind's model.
func buildAuthSchema(kinds []AuthKind) (*schema, []wire.AuthModel, error) {
	props := map[string]json.RawMessage{}
	var models []wire.AuthModel
	sorted := append([]AuthKind(nil), kinds...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
	for _, k := range sorted {
		raw, err := reflectSchema(reflect.TypeOf(authSchemaTypes[k]))
		if err != nil {
			return nil, nil, err
		}
		props[string(k)] = raw
		models = append(models, wire.AuthModel{Kind: string(k), Schema: raw})
	}
	doc := map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"type":                 "object",
		"properties":           props,
		"additionalProperties": false,
		"maxProperties":        1,
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	s, err := compileSchema("auth", raw)
	if err != nil {
		return nil, nil, err
	}
	return s, models, nil
}

// DataDir is the plugin's private data directory: the host's choice
// (CONNECTOR_DATA_DIR), or ./data/<app_id> when run by hand.
func (i *Integration) DataDir() string {
	if i.dataDir != "" {
		return i.dataDir
	}
	if d := os.Getenv(EnvDataDir); d != "" {
		return d
	}
	return filepath.Join("data", i.AppID)
}

// EnvDataDir is the environment variable through which the host gives a
// plugin its data directory.
const EnvDataDir = "CONNECTOR_DATA_DIR"

// Describe returns the description the host sees (after Validate).
func (i *Integration) describe() (*wire.Description, error) {
	if err := i.Validate(); err != nil {
		return nil, err
	}
	return i.desc, nil
}
