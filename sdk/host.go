package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/connector-host/connector-host/internal/wire"
)

// callbackHolder keeps the host's Callback once the host has offered it.
type callbackHolder struct {
	mu sync.RWMutex
	cb wire.Callback
}

func (h *callbackHolder) set(cb wire.Callback) {
	h.mu.Lock()
	h.cb = cb
	h.mu.Unlock()
}

func (h *callbackHolder) get() wire.Callback {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cb
}

// ErrNoHost is returned by HostClient methods when the plugin does not run
// under a host that offers callbacks (e.g. when run by hand).
var ErrNoHost = errors.New("sdk: no host callback available (the plugin is not running under connector-host, or the host does not allow callbacks)")

// ErrUnknownTarget is returned by HostClient.Invoke when the host has no
// such connector or capability.
var ErrUnknownTarget = wire.ErrUnknownTarget

// HostClient calls back into the host: it reaches other connectors through
// the host's router, with the host's credentials store and error mapping.
// The host decides which connectors and capabilities a plugin may reach.
type HostClient struct {
	integ     *Integration
	requestID string
}

// Host returns the client for calling back into the host. Calls made
// through it carry this request's id, so the host's and the target
// connector's log lines name the same request.
func (e *Envelope) Host() *HostClient { return &HostClient{integ: e.integ, requestID: e.RequestID} }

// ConnectorInfo names a connector reachable through the host.
type ConnectorInfo struct {
	AppID        string   `json:"app_id"`
	Version      string   `json:"version"`
	Capabilities []string `json:"capabilities"`
}

// Connectors lists the connectors the host lets this plugin reach.
func (h *HostClient) Connectors(ctx context.Context) ([]ConnectorInfo, error) {
	cb := h.integ.callback.get()
	if cb == nil {
		return nil, ErrNoHost
	}
	list, err := cb.ListConnectors(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ConnectorInfo, 0, len(list))
	for _, c := range list {
		out = append(out, ConnectorInfo{AppID: c.AppID, Version: c.Version, Capabilities: c.Capabilities})
	}
	return out, nil
}

// HostResult is the outcome of a capability invoked through the host.
type HostResult struct {
	// Response is the capability's JSON response (nil on error).
	Response json.RawMessage
	// RawData is the raw upstream data, if requested.
	RawData json.RawMessage
	// Page is the next page, if any.
	Page *Page
	// Err is the failure, with its contract code, if the call failed.
	Err *Error
}

// Invoke runs capability of connector appID through the host. envelope is
// a JSON request envelope (request, settings, credential_id, page...). A
// failure of the capability is in HostResult.Err; a returned error means
// the host could not be reached, or ErrUnknownTarget.
func (h *HostClient) Invoke(ctx context.Context, appID, capability string, envelope json.RawMessage) (*HostResult, error) {
	cb := h.integ.callback.get()
	if cb == nil {
		return nil, ErrNoHost
	}
	res, err := cb.Invoke(ctx, appID, capability, h.requestID, envelope)
	if err != nil {
		return nil, err
	}
	out := &HostResult{Response: res.Response, RawData: res.RawData, Page: fromWirePage(res.Page)}
	if res.Err != nil {
		out.Err = &Error{
			Code: Code(res.Err.Code), Message: res.Err.Message, AppErrorCode: res.Err.AppErrorCode,
			Retryable: res.Err.Retryable, raisedIn: res.Err.RaisedIn,
		}
	}
	return out, nil
}
