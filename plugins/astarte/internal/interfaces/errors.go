package interfaces

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *Error that is not NotFound: an
// interface definition, a data path or a value that breaks an Astarte rule.
var ErrInvalid = errors.New("invalid")

// ErrNotFound is matched by errors for an interface that is not in the
// introspection.
var ErrNotFound = errors.New("not found")

// Error describes what is wrong with an interface definition, a data path or
// a value: which interface, where, and why.
type Error struct {
	// Interface is the interface name, when known.
	Interface string
	// Field is the JSON field of the definition, e.g. "mappings[2].endpoint".
	Field string
	// Path is the data path, e.g. "/sensor1/value".
	Path string
	// Reason says what rule is broken.
	Reason string
	// NotFound is set when the interface is not in the introspection (a
	// path that matches no mapping is invalid, not missing).
	NotFound bool
}

// Error implements error: `interface "a.b.C": path "/x": reason`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("interface")
	if e.Interface != "" {
		fmt.Fprintf(&b, " %q", e.Interface)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, ": path %q", e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) and errors.Is(err, ErrNotFound) work.
func (e *Error) Is(target error) bool {
	if target == ErrNotFound {
		return e.NotFound
	}
	return target == ErrInvalid && !e.NotFound
}

// PathError returns an *Error about a data path of an interface.
func PathError(iface, path, format string, args ...any) *Error {
	return &Error{Interface: iface, Path: path, Reason: fmt.Sprintf(format, args...)}
}

func fieldError(iface, field, format string, args ...any) *Error {
	return &Error{Interface: iface, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func notFound(iface, path, format string, args ...any) *Error {
	return &Error{Interface: iface, Path: path, Reason: fmt.Sprintf(format, args...), NotFound: true}
}
