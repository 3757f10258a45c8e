package eventsprotocol

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Handler answers the events of one name and version.
//
// Handle returns the response payload (marshaled to JSON; nil becomes {}),
// or an error that selects another answer:
//   - *EventError → "<name>:<Type>" with its code and parameters;
//   - *Redirect → "<name>:redirect";
//   - anything else (and a panic) → "<name>:error", code UNHANDLED_ERROR.
type Handler interface {
	Handle(ctx context.Context, ev *Event) (any, error)
}

// HandlerFunc is a Handler working on the raw event; the payload is not
// validated beyond being a JSON object. Use Typed for a validated, typed
// payload.
type HandlerFunc func(ctx context.Context, ev *Event) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, ev *Event) (any, error) { return f(ctx, ev) }

// Resolver finds a handler for a name and version the registry has no
// static handler for. It lets a gateway serve names computed at run time.
type Resolver func(name string, version int) (Handler, bool)

type handlerKey struct {
	name    string
	version int
}

// Registry maps (name, version) to handlers. It is safe for concurrent use;
// handlers may be added while events are processed.
type Registry struct {
	mu       sync.RWMutex
	handlers map[handlerKey]Handler
	resolver Resolver
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[handlerKey]Handler{}}
}

// Add registers h for name and version. The name must match NamePattern and
// the pair must not be registered yet.
func (r *Registry) Add(name string, version int, h Handler) error {
	if !ValidName(name) {
		return fmt.Errorf("eventsprotocol: name %q must match %s", name, NamePattern)
	}
	if h == nil {
		return errors.New("eventsprotocol: handler must not be nil")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := handlerKey{name, version}
	if _, dup := r.handlers[k]; dup {
		return fmt.Errorf("eventsprotocol: %s v%d is already registered", name, version)
	}
	r.handlers[k] = h
	return nil
}

// SetResolver sets the resolver consulted for names and versions that have
// no registered handler; nil removes it.
func (r *Registry) SetResolver(res Resolver) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolver = res
}

// Lookup returns the handler for name and version: the registered one, else
// the resolver's.
func (r *Registry) Lookup(name string, version int) (Handler, bool) {
	r.mu.RLock()
	h, ok := r.handlers[handlerKey{name, version}]
	res := r.resolver
	r.mu.RUnlock()
	if ok {
		return h, true
	}
	if res != nil {
		if h, ok := res(name, version); ok && h != nil {
			return h, true
		}
	}
	return nil, false
}

// Register adds a typed handler (see Typed) to r for name and version.
func Register[P, R any](r *Registry, name string, version int, fn func(context.Context, Request[P]) (R, error)) error {
	h, err := Typed(fn)
	if err != nil {
		return fmt.Errorf("eventsprotocol: %s v%d: %w", name, version, err)
	}
	return r.Add(name, version, h)
}
