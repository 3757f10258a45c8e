package layout

import (
	"fmt"
	"strings"
)

// Violation is one broken rule, located by a path such as
// "entities[1].fields[0].type" (layouts) or "dimensions.width" (records).
type Violation struct {
	// Path locates the offending attribute.
	Path string `json:"path"`
	// Reason says what is wrong with it.
	Reason string `json:"reason"`
}

// String formats the violation as "path: reason".
func (v Violation) String() string {
	if v.Path == "" {
		return v.Reason
	}
	return v.Path + ": " + v.Reason
}

// ValidationError reports every violation found in one validation run.
type ValidationError struct {
	// Subject names what was validated, e.g. "data layout" or "record".
	Subject string
	// Violations are in the order they were found (input order).
	Violations []Violation
}

// Error lists all violations: "invalid data layout: a: x; b: y".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return fmt.Sprintf("invalid %s: %s", e.Subject, strings.Join(parts, "; "))
}

// violations accumulates Violations.
type violations []Violation

func (v *violations) add(path, reason string) {
	*v = append(*v, Violation{Path: path, Reason: reason})
}

// required records a violation when s is empty or blank and reports whether
// s was present.
func (v *violations) required(path, s string) bool {
	if strings.TrimSpace(s) == "" {
		v.add(path, "is required")
		return false
	}
	return true
}

func (v violations) err(subject string) error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Subject: subject, Violations: v}
}
