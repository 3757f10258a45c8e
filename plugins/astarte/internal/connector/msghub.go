package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/connector-host/connector-host/plugins/astarte/internal/device"
	"github.com/connector-host/connector-host/plugins/astarte/internal/msghub"
	"github.com/connector-host/connector-host/sdk"
)

// hubTarget is where a grpc device attaches.
type hubTarget struct {
	Address string `json:"address"`
	NodeID  string `json:"node_id,omitempty"`
}

// metaNodeID is the device's Message Hub node id, generated on the first
// grpc connect that gives none.
const metaNodeID = "msghub_node_id"

// parseNodeID checks a node id: a UUID, not the nil one, returned in
// canonical form.
func parseNodeID(s string) (string, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a UUID: %w", err)
	}
	if id == uuid.Nil {
		return "", errors.New("the nil UUID is not a node id")
	}
	return id.String(), nil
}

// connectHub starts the device's attachment to a Message Hub (no pairing,
// no certificates on this path).
func (p *plugin) connectHub(ctx context.Context, c *cfg, id string, hub *hubTarget) (*device.Device, error) {
	proto, err := msghub.ParseProtocol(c.MsghubProtocol)
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "settings.msghub_protocol: %v", err)
	}
	target := hubTarget{Address: msghub.DefaultAddress}
	if hub != nil {
		target = *hub
		if target.Address == "" {
			target.Address = msghub.DefaultAddress
		}
	}
	if err := msghub.CheckAddress(target.Address); err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "request.msghub_address: %v", err)
	}
	if target.NodeID != "" {
		if target.NodeID, err = parseNodeID(target.NodeID); err != nil {
			return nil, sdk.Errorf(sdk.BadRequest, "request.node_id: %v", err)
		}
	}
	d, err := p.device(ctx, c, id)
	if err != nil {
		return nil, err
	}
	if target.NodeID, err = p.nodeID(ctx, id, target.NodeID); err != nil {
		return nil, err
	}
	tr, err := msghub.New(msghub.Config{Address: target.Address, NodeID: uuid.MustParse(target.NodeID), Protocol: proto,
		Pool: p.hubPool, Logger: p.log})
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "%v", err)
	}
	if err := d.Connect(tr); err != nil {
		return nil, sdk.Errorf(sdk.Conflict, "%v", err)
	}
	raw, _ := json.Marshal(autoconnect{Transport: "grpc", Settings: c.Settings, Msghub: &target})
	if err := p.store.SetMeta(ctx, id, metaAutoconnect, string(raw)); err != nil {
		return nil, err
	}
	return d, nil
}

// nodeID returns the node id to use: the one given (saved for later), the
// saved one, or a new random one (saved). A node id belongs to one device:
// two devices attaching with the same id would take the attachment from
// each other forever.
func (p *plugin) nodeID(ctx context.Context, deviceID, given string) (string, error) {
	if given != "" {
		all, err := p.store.DevicesWithMeta(ctx, metaNodeID)
		if err != nil {
			return "", err
		}
		for other, id := range all {
			if other != deviceID && id == given {
				return "", sdk.Errorf(sdk.Conflict, "request.node_id: %s is the node id of device %s", given, other)
			}
		}
	}
	if given == "" {
		saved, ok, err := p.store.Meta(ctx, deviceID, metaNodeID)
		if err != nil {
			return "", err
		}
		if ok {
			if id, err := parseNodeID(saved); err == nil {
				return id, nil
			}
		}
		given = uuid.NewString()
	}
	if err := p.store.SetMeta(ctx, deviceID, metaNodeID, given); err != nil {
		return "", err
	}
	return given, nil
}

// HubInfo is the Message Hub part of a device's status: its node id and,
// when it connects over grpc, the hub address.
type HubInfo struct {
	NodeID        string `json:"node_id,omitempty"`
	MsghubAddress string `json:"msghub_address,omitempty"`
}

func (p *plugin) hubInfo(ctx context.Context, id string) HubInfo {
	var hi HubInfo
	if raw, ok, err := p.store.Meta(ctx, id, metaAutoconnect); err == nil && ok {
		var ac autoconnect
		if json.Unmarshal([]byte(raw), &ac) == nil && ac.Msghub != nil {
			hi.MsghubAddress = ac.Msghub.Address
		}
	}
	if nid, ok, err := p.store.Meta(ctx, id, metaNodeID); err == nil && ok {
		hi.NodeID = nid
	}
	return hi
}

// hubError maps a Message Hub status: UNAUTHENTICATED → unauthenticated,
// INVALID_ARGUMENT → bad_request, INTERNAL → service_error with the hub's
// description, UNAVAILABLE and the rest → service_error (retryable).
func hubError(e *msghub.StatusError) *sdk.Error {
	switch e.Code {
	case codes.Unauthenticated:
		return &sdk.Error{Code: sdk.Unauthenticated, Message: e.Error(), Err: e}
	case codes.InvalidArgument:
		return &sdk.Error{Code: sdk.BadRequest, Message: e.Error(), Err: e}
	case codes.Internal:
		return &sdk.Error{Code: sdk.ServiceError, Message: e.Error(), Err: e}
	}
	return &sdk.Error{Code: sdk.ServiceError, Message: e.Error(), Err: e, Retryable: true}
}
