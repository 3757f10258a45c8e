package envelope

import (
	"encoding/json"
	"sort"

	"github.com/connector-host/connector-host/internal/wire"
)

// Info is a connector's description as shown by GET /v1/connectors/{app_id},
// `connector-host info` and a plugin's own `info` command.
type Info struct {
	AppID                 string                      `json:"app_id"`
	Version               string                      `json:"version"`
	Capabilities          []string                    `json:"capabilities"`
	CapabilitySchema      map[string]CapabilitySchema `json:"capability_schema"`
	UserFriendlyName      string                      `json:"user_friendly_name"`
	Description           string                      `json:"description"`
	Categories            []string                    `json:"categories"`
	LogoURL               string                      `json:"logo_url"`
	RequestSettingsSchema json.RawMessage             `json:"request_settings_schema"`
	AuthenticationSchema  json.RawMessage             `json:"authentication_schema"`
	OAuth                 *wire.OAuthSettings         `json:"oauth,omitempty"`
	InboundRoutes         []wire.InboundRoute         `json:"inbound_routes,omitempty"`
	SDKVersion            string                      `json:"sdk_version,omitempty"`
}

// CapabilitySchema is one capability's schemas.
type CapabilitySchema struct {
	Argument    json.RawMessage `json:"argument"`
	Output      json.RawMessage `json:"output"`
	Description string          `json:"description"`
	Streaming   bool            `json:"streaming"`
}

// NewInfo builds the Info of a description. caps are the capabilities to
// show (the plugin's own plus any the host provides).
func NewInfo(d *wire.Description, caps []wire.Capability) Info {
	info := Info{
		AppID:            d.AppID,
		Version:          d.Version,
		Capabilities:     make([]string, 0, len(caps)),
		CapabilitySchema: make(map[string]CapabilitySchema, len(caps)),
		UserFriendlyName: d.Info.UserFriendlyName,
		Description:      d.Info.Description,
		Categories:       d.Info.Categories,
		LogoURL:          d.Info.LogoURL,
		OAuth:            d.OAuth,
		InboundRoutes:    d.InboundRoutes,
		SDKVersion:       d.SDKVersion,
	}
	if info.Categories == nil {
		info.Categories = []string{}
	}
	for _, c := range caps {
		info.Capabilities = append(info.Capabilities, c.Name)
		info.CapabilitySchema[c.Name] = CapabilitySchema{
			Argument: orEmpty(c.RequestSchema), Output: orEmpty(c.ResponseSchema),
			Description: c.Description, Streaming: c.Streaming,
		}
	}
	sort.Strings(info.Capabilities)
	info.RequestSettingsSchema = orEmpty(d.SettingsSchema)
	info.AuthenticationSchema = AuthSchema(d.AuthModels)
	return info
}

// AuthSchema combines the auth models into the schema of the envelope's
// "auth" object.
func AuthSchema(models []wire.AuthModel) json.RawMessage {
	props := make(map[string]json.RawMessage, len(models))
	for _, m := range models {
		props[m.Kind] = m.Schema
	}
	b, _ := json.Marshal(map[string]any{
		"type":                 "object",
		"properties":           props,
		"additionalProperties": false,
		"maxProperties":        1,
	})
	return b
}

func orEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage(`{}`)
	}
	return raw
}
