package device

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Manager holds the devices of one plugin process, keyed by device id. All
// devices share one store.
type Manager struct {
	base Config

	mu      sync.Mutex
	devices map[string]*Device
	closed  bool
}

// NewManager returns a manager whose devices take their settings from base
// (DeviceID is ignored; Realm is the default realm).
func NewManager(base Config) *Manager {
	return &Manager{base: base, devices: map[string]*Device{}}
}

// Device returns the open device with this id, opening it (in the default
// realm) when needed.
func (m *Manager) Device(ctx context.Context, deviceID string) (*Device, error) {
	return m.DeviceInRealm(ctx, m.base.Realm, deviceID)
}

// ErrRealmConflict is matched by the error of using a device id in another
// realm than its own.
var ErrRealmConflict = errors.New("the device belongs to another realm")

// metaRealm is the realm a device's data belongs to, saved when the device
// is first opened.
const metaRealm = "realm"

// DeviceInRealm is Device for an explicit realm. A device id belongs to one
// realm: the realm it was first opened in is saved with its data, and
// opening it in another realm (in this process or after a restart) fails
// with an error matching ErrRealmConflict. Forgetting the device's data
// (store.ForgetDevice) frees the id.
func (m *Manager) DeviceInRealm(ctx context.Context, realm, deviceID string) (*Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if d, ok := m.devices[deviceID]; ok {
		if d.realm != realm {
			return nil, fmt.Errorf("device %s is open in realm %q, not %q: %w", deviceID, d.realm, realm, ErrRealmConflict)
		}
		return d, nil
	}
	if st := m.base.Store; st != nil {
		saved, ok, err := st.Meta(ctx, deviceID, metaRealm)
		if err != nil {
			return nil, err
		}
		if ok && saved != realm {
			return nil, fmt.Errorf("device %s belongs to realm %q (its stored data is kept for it), not %q: %w", deviceID, saved, realm, ErrRealmConflict)
		}
		if !ok {
			if err := st.SetMeta(ctx, deviceID, metaRealm, realm); err != nil {
				return nil, err
			}
		}
	}
	cfg := m.base
	cfg.DeviceID, cfg.Realm = deviceID, realm
	d, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m.devices[deviceID] = d
	return d, nil
}

// Lookup returns an open device without opening it.
func (m *Manager) Lookup(deviceID string) (*Device, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devices[deviceID]
	return d, ok
}

// IDs lists the open devices, sorted.
func (m *Manager) IDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.devices))
	for id := range m.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Forget closes a device and removes it from the manager (its stored data is
// kept).
func (m *Manager) Forget(ctx context.Context, deviceID string) error {
	m.mu.Lock()
	d, ok := m.devices[deviceID]
	delete(m.devices, deviceID)
	m.mu.Unlock()
	if !ok {
		return nil
	}
	return d.Close(ctx)
}

// Close disconnects and closes every device.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	devs := make([]*Device, 0, len(m.devices))
	for _, d := range m.devices {
		devs = append(devs, d)
	}
	m.devices = map[string]*Device{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	for k, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = d.Close(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
