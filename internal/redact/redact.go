// Package redact keeps the set of secret values that are live in a process
// (credentials of the calls in flight, configured secrets) and removes them
// from log lines and error messages.
package redact

import (
	"encoding/json"
	"io"
	"strings"
	"sync"
)

// Mask replaces a secret in redacted text.
const Mask = "[REDACTED]"

// minLen is the shortest value treated as a secret: shorter strings (a
// "true", a port number) would mangle unrelated text and are not credentials.
const minLen = 4

// Set is a concurrency-safe, reference-counted set of secret values.
type Set struct {
	mu       sync.Mutex
	refs     map[string]int
	replacer *strings.Replacer // nil when refs is empty; rebuilt lazily
	dirty    bool
}

// NewSet returns an empty Set.
func NewSet() *Set { return &Set{refs: map[string]int{}} }

// Add registers secrets and returns a func that releases them again. Empty
// and very short values are ignored.
func (s *Set) Add(secrets ...string) (release func()) {
	var added []string
	s.mu.Lock()
	for _, v := range secrets {
		if len(v) < minLen {
			continue
		}
		s.refs[v]++
		added = append(added, v)
		for _, variant := range variants(v) {
			s.refs[variant]++
			added = append(added, variant)
		}
	}
	if len(added) > 0 {
		s.dirty = true
	}
	s.mu.Unlock()
	if len(added) == 0 {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			for _, v := range added {
				if s.refs[v]--; s.refs[v] <= 0 {
					delete(s.refs, v)
				}
			}
			s.dirty = true
			s.mu.Unlock()
		})
	}
}

// variants are the forms a secret takes once embedded in JSON text.
func variants(v string) []string {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	quoted := string(b[1 : len(b)-1])
	if quoted == v {
		return nil
	}
	return []string{quoted}
}

// String returns text with every live secret replaced by Mask.
func (s *Set) String(text string) string {
	s.mu.Lock()
	r := s.current()
	s.mu.Unlock()
	if r == nil {
		return text
	}
	return r.Replace(text)
}

// current returns the replacer for the live secrets; s.mu must be held.
func (s *Set) current() *strings.Replacer {
	if !s.dirty {
		return s.replacer
	}
	s.dirty = false
	if len(s.refs) == 0 {
		s.replacer = nil
		return nil
	}
	// Longest first, so a secret containing another is masked whole.
	keys := make([]string, 0, len(s.refs))
	for k := range s.refs {
		keys = append(keys, k)
	}
	sortByLenDesc(keys)
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, k, Mask)
	}
	s.replacer = strings.NewReplacer(pairs...)
	return s.replacer
}

func sortByLenDesc(keys []string) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && len(keys[j]) > len(keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

// Writer returns an io.Writer that masks live secrets in everything written
// to w. Each Write is treated as a whole (log lines are written whole).
func (s *Set) Writer(w io.Writer) io.Writer { return &writer{set: s, w: w} }

type writer struct {
	set *Set
	w   io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	w.set.mu.Lock()
	r := w.set.current()
	w.set.mu.Unlock()
	if r == nil {
		return w.w.Write(p)
	}
	if _, err := io.WriteString(w.w, r.Replace(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// StringsIn returns every string value found in a JSON document (object
// keys excluded). Used to treat a whole credential object as secret.
func StringsIn(doc any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case string:
			out = append(out, t)
		case map[string]any:
			for _, e := range t {
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(doc)
	return out
}
