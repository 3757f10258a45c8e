package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/internal/wire"
)

// AddOpenAPIPath documents a mounted route in /openapi.json (path item
// object keyed by path).
func (s *Server) AddOpenAPIPath(path string, item map[string]any) {
	s.extraPaths = append(s.extraPaths, openAPIPath{path: path, item: item})
}

type openAPIPath struct {
	path string
	item map[string]any
}

// openAPI serves an OpenAPI 3.1 document built from the loaded plugins'
// schemas.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	paths := map[string]any{
		"/healthz":                get("Liveness", "Always 200 while the host runs.", ref("#/components/responses/JSON")),
		"/readyz":                 get("Readiness", "200 when every plugin answers its health check, else 503 listing which.", ref("#/components/responses/JSON")),
		"/v1/connectors":          get("List connectors", "Every loaded connector with its version, status and capabilities.", ref("#/components/responses/JSON")),
		"/v1/connectors/{app_id}": withParams(get("Connector info", "Capabilities, their schemas, settings and auth schemas, OAuth declaration.", ref("#/components/responses/JSON")), "app_id"),
		"/openapi.json":           get("This document", "OpenAPI 3.1 of the host, built from the loaded plugins.", ref("#/components/responses/JSON")),
		"/metrics":                get("Prometheus metrics", "Prometheus text format.", map[string]any{"description": "metrics", "content": map[string]any{"text/plain": map[string]any{}}}),
		"/v1/connectors/{app_id}/{capability}": withParams(map[string]any{"post": map[string]any{
			"summary":     "Invoke a capability",
			"description": "Generic form of the per-capability operations below.",
			"requestBody": map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": ref("#/components/schemas/RequestEnvelope")}}},
			"responses":   map[string]any{"200": map[string]any{"description": "success envelope, or NDJSON for a streaming capability"}, "default": ref("#/components/responses/Error")},
		}}, "app_id", "capability"),
	}
	for _, id := range s.opts.Router.AppIDs() {
		sup, _ := s.opts.Router.Supervisor(id)
		d := sup.Description()
		if d == nil {
			continue
		}
		authSchema := envelope.AuthSchema(d.AuthModels)
		for _, c := range s.opts.Router.Capabilities(d) {
			paths["/v1/connectors/"+id+"/"+c.Name] = capabilityOperation(id, d, c, authSchema)
		}
	}
	for _, p := range s.extraPaths {
		paths[p.path] = p.item
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "connector-host",
			"version":     "1",
			"description": "Capability calls to out-of-process connector plugins. Errors use the error envelope; its status_code equals the HTTP status.",
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "Required on /v1 routes when the host runs with --api-token."}},
			"schemas": map[string]any{
				"Page": map[string]any{"type": []string{"object", "null"}, "properties": map[string]any{"token": map[string]any{"type": "string"}, "size": map[string]any{"type": "integer", "minimum": 0}}},
				"RequestEnvelope": map[string]any{
					"type":     "object",
					"required": []string{"request"},
					"properties": map[string]any{
						"request":          map[string]any{"type": "object"},
						"settings":         map[string]any{"type": "object"},
						"auth":             map[string]any{"type": "object"},
						"credential_id":    map[string]any{"type": "string"},
						"page":             ref("#/components/schemas/Page"),
						"include_raw_data": map[string]any{"type": "boolean"},
					},
					"additionalProperties": false,
				},
				"ErrorEnvelope": map[string]any{
					"type":     "object",
					"required": []string{"is_error", "response", "error"},
					"properties": map[string]any{
						"is_error": map[string]any{"const": true},
						"response": map[string]any{"type": "null"},
						"error": map[string]any{
							"type":     "object",
							"required": []string{"message", "status_code", "error_code", "app_id", "raised_by", "raised_in"},
							"properties": map[string]any{
								"message": map[string]any{"type": "string"}, "status_code": map[string]any{"type": "integer"},
								"error_code": map[string]any{"type": "string", "description": "<app_id>.<code>"}, "app_id": map[string]any{"type": "string"},
								"app_error_code": map[string]any{"type": "string"}, "raised_by": map[string]any{"type": "string"}, "raised_in": map[string]any{"type": "string"},
							},
						},
					},
				},
			},
			"responses": map[string]any{
				"Error": map[string]any{"description": "error envelope", "content": map[string]any{"application/json": map[string]any{"schema": ref("#/components/schemas/ErrorEnvelope")}}},
				"JSON":  map[string]any{"description": "JSON document", "content": map[string]any{"application/json": map[string]any{}}},
			},
		},
	}
	if s.opts.APIToken != "" {
		doc["security"] = []any{map[string]any{"bearer": []string{}}}
	}
	writeJSON(w, http.StatusOK, doc)
}

func capabilityOperation(appID string, d *wire.Description, c wire.Capability, authSchema json.RawMessage) map[string]any {
	reqSchema := map[string]any{
		"type":     "object",
		"required": []string{"request"},
		"properties": map[string]any{
			"request":          rawOr(c.RequestSchema),
			"settings":         rawOr(d.SettingsSchema),
			"auth":             authSchema,
			"credential_id":    map[string]any{"type": "string", "description": "use a credential stored by the host instead of auth"},
			"page":             ref("#/components/schemas/Page"),
			"include_raw_data": map[string]any{"type": "boolean"},
		},
		"additionalProperties": false,
	}
	var okResp map[string]any
	if c.Streaming {
		okResp = map[string]any{
			"description": "NDJSON: one item per line, then a final {\"page\":...} or {\"error\":{...}} line",
			"content": map[string]any{"application/x-ndjson": map[string]any{
				"itemSchema": rawOr(c.ResponseSchema),
			}},
		}
	} else {
		okResp = map[string]any{
			"description": "success envelope",
			"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{
				"type":     "object",
				"required": []string{"response"},
				"properties": map[string]any{
					"response": rawOr(c.ResponseSchema),
					"raw_data": map[string]any{},
					"page":     ref("#/components/schemas/Page"),
				},
			}}},
		}
	}
	return map[string]any{"post": map[string]any{
		"operationId": appID + "." + c.Name,
		"summary":     c.Name,
		"description": c.Description,
		"tags":        []string{appID},
		"requestBody": map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": reqSchema}}},
		"responses":   map[string]any{"200": okResp, "default": ref("#/components/responses/Error")},
	}}
}

func rawOr(raw json.RawMessage) any {
	if len(raw) == 0 {
		return map[string]any{}
	}
	return raw
}

func ref(to string) map[string]any { return map[string]any{"$ref": to} }

func get(summary, description string, resp any) map[string]any {
	return map[string]any{"get": map[string]any{"summary": summary, "description": description, "responses": map[string]any{"200": resp}}}
}

func withParams(item map[string]any, names ...string) map[string]any {
	var params []any
	for _, n := range names {
		params = append(params, map[string]any{"name": n, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	item["parameters"] = params
	return item
}
