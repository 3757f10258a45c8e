package device

import (
	"context"
	"fmt"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

// inbound handles server-owned data: properties are stored (or deleted on
// unset) before the event is emitted.
func (d *Device) inbound(ctx context.Context, in transport.Inbound) {
	iface := d.Interface(in.Interface.Name)
	drop := func(format string, args ...any) {
		handler{d}.Dropped(fmt.Errorf("interface %q path %q: %s", in.Interface.Name, in.Path, fmt.Sprintf(format, args...)))
	}
	if iface == nil || iface.Major != in.Interface.Major {
		drop("interface is not in the device introspection")
		return
	}
	if iface.Ownership != interfaces.ServerOwned {
		drop("interface is device-owned: Astarte cannot publish on it")
		return
	}
	d.count(func(s *statsCounters) { s.received++ })
	if iface.IsProperties() {
		if in.Unset {
			if err := d.store.DeleteProperty(ctx, d.id, iface.Name, in.Path); err != nil {
				drop("cannot delete the property: %v", err)
				return
			}
			d.emit(Event{Type: EventPropertyUnset, Interface: iface.Name, Path: in.Path})
			return
		}
		if _, err := iface.Lookup(in.Path); err != nil {
			drop("%v", err)
			return
		}
		data, err := payload.Encode(in.Value, nil)
		if err != nil {
			drop("%v", err)
			return
		}
		if err := d.store.SetProperty(ctx, store.Property{Device: d.id, Interface: iface.Name, Path: in.Path, Major: iface.Major,
			Ownership: string(interfaces.ServerOwned), Value: data}); err != nil {
			drop("cannot store the property: %v", err)
			return
		}
	} else if in.Unset {
		drop("empty payload on a datastream")
		return
	}
	d.emit(Event{Type: EventDataReceived, Interface: iface.Name, Path: in.Path, Value: in.Value, Timestamp: in.Timestamp})
}

// purge deletes the stored server-owned properties that Astarte no longer
// lists, emitting property_unset for each.
func (d *Device) purge(ctx context.Context, keep []payload.PropertyPath) {
	set := make(map[payload.PropertyPath]bool, len(keep))
	for _, p := range keep {
		set[p] = true
	}
	rows, err := d.store.Properties(ctx, d.id)
	if err != nil {
		handler{d}.Dropped(fmt.Errorf("consumer properties: %w", err))
		return
	}
	for _, r := range rows {
		if r.Ownership != string(interfaces.ServerOwned) || set[payload.PropertyPath{Interface: r.Interface, Path: r.Path}] {
			continue
		}
		if err := d.store.DeleteProperty(ctx, d.id, r.Interface, r.Path); err != nil {
			handler{d}.Dropped(fmt.Errorf("consumer properties: %w", err))
			return
		}
		d.emit(Event{Type: EventPropertyUnset, Interface: r.Interface, Path: r.Path})
	}
}
