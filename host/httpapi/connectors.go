package httpapi

import (
	"net/http"

	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/sdk"
)

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when every loaded plugin is healthy, else 503 naming
// the ones that are not.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	states := map[string]string{}
	var notReady []string
	for _, id := range s.opts.Router.AppIDs() {
		sup, _ := s.opts.Router.Supervisor(id)
		st, _, _ := sup.Status()
		state := string(st)
		if !sup.Healthy() {
			notReady = append(notReady, id)
			if st == "ready" {
				state = "failed"
			}
		}
		states[id] = state
		if s.opts.Metrics != nil {
			s.opts.Metrics.SetPluginUp(id, sup.Healthy())
		}
	}
	if len(notReady) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "not_ready": notReady, "connectors": states})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "connectors": states})
}

// connectorSummary is one entry of GET /v1/connectors.
type connectorSummary struct {
	AppID        string   `json:"app_id"`
	Version      string   `json:"version"`
	Status       string   `json:"status"`
	Capabilities []string `json:"capabilities"`
	Error        string   `json:"error,omitempty"`
}

func (s *Server) listConnectors(w http.ResponseWriter, _ *http.Request) {
	out := make([]connectorSummary, 0, len(s.opts.Router.AppIDs()))
	for _, id := range s.opts.Router.AppIDs() {
		sup, _ := s.opts.Router.Supervisor(id)
		st, _, lastErr := sup.Status()
		c := connectorSummary{AppID: id, Status: string(st), Capabilities: []string{}}
		if lastErr != nil && st != "ready" {
			c.Error = lastErr.Error()
		}
		if d := sup.Description(); d != nil {
			c.Version = d.Version
			info := envelope.NewInfo(d, s.opts.Router.Capabilities(d))
			c.Capabilities = info.Capabilities
		}
		out = append(out, c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"connectors": out})
}

func (s *Server) connectorInfo(w http.ResponseWriter, r *http.Request) {
	appID := r.PathValue("app_id")
	if _, ok := s.opts.Router.Supervisor(appID); !ok {
		s.writeHostError(w, sdk.NotFound, "httpapi.connectorInfo", "no connector \""+appID+"\" is loaded")
		return
	}
	d, f := s.opts.Router.Describe(r.Context(), appID)
	if f != nil {
		writeFailure(w, f)
		return
	}
	writeJSON(w, http.StatusOK, envelope.NewInfo(d, s.opts.Router.Capabilities(d)))
}
