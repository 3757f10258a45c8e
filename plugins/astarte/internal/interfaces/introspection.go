package interfaces

import (
	"sort"
	"strings"
)

// Introspection is the set of interfaces a device declares, at most one
// version per interface name. The zero value is empty and ready to use. It is
// not safe for concurrent mutation; Clone it to hand out a snapshot.
type Introspection struct {
	byName map[string]*Interface
}

// Add puts iface in the set, replacing any interface with the same name. It
// returns the replaced interface, if any.
func (in *Introspection) Add(iface *Interface) (replaced *Interface) {
	if in.byName == nil {
		in.byName = map[string]*Interface{}
	}
	replaced = in.byName[iface.Name]
	in.byName[iface.Name] = iface
	return replaced
}

// Remove deletes the interface called name and returns it (nil if absent).
func (in *Introspection) Remove(name string) *Interface {
	iface := in.byName[name]
	delete(in.byName, name)
	return iface
}

// Get returns the interface called name, or nil.
func (in *Introspection) Get(name string) *Interface {
	return in.byName[name]
}

// Len is the number of interfaces.
func (in *Introspection) Len() int { return len(in.byName) }

// All returns the interfaces sorted by name.
func (in *Introspection) All() []*Interface {
	out := make([]*Interface, 0, len(in.byName))
	for _, i := range in.byName {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// ServerOwned returns the server-owned interfaces sorted by name.
func (in *Introspection) ServerOwned() []*Interface {
	var out []*Interface
	for _, i := range in.All() {
		if i.IsServerOwned() {
			out = append(out, i)
		}
	}
	return out
}

// Clone returns an independent copy of the set (interfaces are shared: they
// are immutable).
func (in *Introspection) Clone() *Introspection {
	c := &Introspection{byName: make(map[string]*Interface, len(in.byName))}
	for k, v := range in.byName {
		c.byName[k] = v
	}
	return c
}

// String is the MQTT introspection payload "name:major:minor;...", sorted by
// name.
func (in *Introspection) String() string {
	all := in.All()
	parts := make([]string, len(all))
	for k, i := range all {
		parts[k] = i.IntrospectionEntry()
	}
	return strings.Join(parts, ";")
}

// Lookup resolves an interface name and a concrete path of an individual
// interface to its interface and mapping.
func (in *Introspection) Lookup(name, path string) (*Interface, *Mapping, error) {
	iface := in.Get(name)
	if iface == nil {
		return nil, nil, notFound(name, path, "interface is not in the device introspection")
	}
	m, err := iface.Lookup(path)
	if err != nil {
		return nil, nil, err
	}
	return iface, m, nil
}
