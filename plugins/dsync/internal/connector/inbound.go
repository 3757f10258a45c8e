package connector

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/connector-host/connector-host/plugins/dsync/internal/inbound"
	"github.com/connector-host/connector-host/plugins/dsync/internal/layout"
	"github.com/connector-host/connector-host/plugins/dsync/internal/store"
	"github.com/connector-host/connector-host/sdk"
)

// inboundState serves the inbound API for the connector's current settings
// (passed by the host with every inbound request). The store and handler
// are rebuilt when the data layout or the inbound key change; the SQLite
// file stays the same, so records survive such changes and restarts.
type inboundState struct {
	dataDir  func() string
	settings func(*http.Request) json.RawMessage

	mu      sync.RWMutex
	sum     [32]byte
	store   *store.Store
	handler http.Handler
}

func newInboundState(dataDir func() string, settings func(*http.Request) json.RawMessage) *inboundState {
	return &inboundState{dataDir: dataDir, settings: settings}
}

func (s *inboundState) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	set, sum, err := parseSettings(s.settings(r))
	// Serve under the read lock so that a concurrent rebuild cannot close
	// the store mid-request; two rounds bound a race with changing settings.
	for range 2 {
		if err != nil {
			break
		}
		s.mu.RLock()
		if s.handler != nil && s.sum == sum {
			s.handler.ServeHTTP(w, r)
			s.mu.RUnlock()
			return
		}
		s.mu.RUnlock()
		err = s.rebuild(set, sum)
	}
	status := http.StatusServiceUnavailable
	msg := "the connector's inbound API is not configured"
	var se *sdk.Error
	if errors.As(err, &se) {
		msg += ": " + se.Message
	}
	b, _ := json.Marshal(map[string]any{"status": status, "message": http.StatusText(status), "detail": msg, "data": nil})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// parseSettings reads the inbound settings and their fingerprint.
func parseSettings(raw json.RawMessage) (Settings, [32]byte, error) {
	var set Settings
	var sum [32]byte
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &set); err != nil {
			return set, sum, sdk.Errorf(sdk.BadRequest, "settings: %v", err)
		}
	}
	if set.InboundAPIKey == "" {
		return set, sum, sdk.Errorf(sdk.IntegrationMissingParameter, "settings.inbound_api_key is not set")
	}
	if set.DataLayout == nil {
		return set, sum, sdk.Errorf(sdk.IntegrationMissingParameter, "settings.data_layout is not set")
	}
	layoutRaw, err := json.Marshal(set.DataLayout)
	if err != nil {
		return set, sum, sdk.Errorf(sdk.BadRequest, "settings.data_layout: %v", err)
	}
	h := sha256.New()
	h.Write(layoutRaw)
	h.Write([]byte{0})
	h.Write([]byte(set.InboundAPIKey.Reveal()))
	copy(sum[:], h.Sum(nil))
	return set, sum, nil
}

// rebuild opens the store and handler for set.
func (s *inboundState) rebuild(set Settings, sum [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handler != nil && s.sum == sum {
		return nil
	}
	layoutRaw, _ := json.Marshal(set.DataLayout)
	l, err := layout.FromSetting(layoutRaw)
	if err != nil {
		return sdk.Errorf(sdk.BadRequest, "settings.data_layout: %w", err)
	}
	if s.store != nil {
		_ = s.store.Close()
		s.store, s.handler = nil, nil
	}
	st, err := store.Open(s.dataDir(), l)
	if err != nil {
		return sdk.Errorf(sdk.BadRequest, "settings.data_layout: %w", err)
	}
	hd, err := inbound.New(inbound.Config{Layout: l, Store: st, APIKey: set.InboundAPIKey.Reveal()})
	if err != nil {
		_ = st.Close()
		return sdk.Errorf(sdk.BadRequest, "settings.data_layout: %w", err)
	}
	s.sum, s.store, s.handler = sum, st, hd
	return nil
}

// Close closes the store.
func (s *inboundState) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store == nil {
		return nil
	}
	err := s.store.Close()
	s.store, s.handler = nil, nil
	return err
}
