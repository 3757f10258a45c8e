package eventsprotocol

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

func constHandler(v any) Handler {
	return HandlerFunc(func(context.Context, *Event) (any, error) { return v, nil })
}

func TestRegistryAdd(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	if err := reg.Add("get:event", 1, constHandler("v1")); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add("get:event", 2, constHandler("v2")); err != nil {
		t.Fatalf("same name, other version: %v", err)
	}
	tests := []struct {
		name    string
		version int
		h       Handler
		want    string
	}{
		{"get:event", 1, constHandler("again"), "already registered"},
		{"Bad", 1, constHandler(nil), "must match"},
		{"get:other", 1, nil, "must not be nil"},
	}
	for _, tt := range tests {
		err := reg.Add(tt.name, tt.version, tt.h)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Add(%q, %d) = %v, want %q", tt.name, tt.version, err, tt.want)
		}
	}
	for v, want := range map[int]string{1: "v1", 2: "v2"} {
		h, ok := reg.Lookup("get:event", v)
		if !ok {
			t.Fatalf("Lookup v%d: not found", v)
		}
		got, _ := h.Handle(context.Background(), &Event{})
		if got != want {
			t.Errorf("v%d handler = %v", v, got)
		}
	}
	if _, ok := reg.Lookup("get:event", 3); ok {
		t.Error("Lookup v3 found a handler")
	}
}

func TestRegistryResolver(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	_ = reg.Add("static:event", 1, constHandler("static"))
	var calls []string
	var mu sync.Mutex
	reg.SetResolver(func(name string, version int) (Handler, bool) {
		mu.Lock()
		calls = append(calls, name)
		mu.Unlock()
		if strings.HasPrefix(name, "dyn:") && version == 1 {
			return constHandler("dynamic " + name), true
		}
		if name == "nil:handler" {
			return nil, true
		}
		return nil, false
	})
	h, ok := reg.Lookup("static:event", 1)
	if got, _ := h.Handle(context.Background(), nil); !ok || got != "static" {
		t.Errorf("static lookup = %v %v", got, ok)
	}
	h, ok = reg.Lookup("dyn:echo", 1)
	if !ok {
		t.Fatal("dynamic lookup failed")
	}
	if got, _ := h.Handle(context.Background(), nil); got != "dynamic dyn:echo" {
		t.Errorf("dynamic handler = %v", got)
	}
	for _, k := range []struct {
		name string
		v    int
	}{{"dyn:echo", 2}, {"other:event", 1}, {"nil:handler", 1}} {
		if _, ok := reg.Lookup(k.name, k.v); ok {
			t.Errorf("Lookup(%s, %d) found a handler", k.name, k.v)
		}
	}
	if len(calls) != 4 || calls[0] != "dyn:echo" {
		t.Errorf("resolver calls = %v (the static name must not reach it)", calls)
	}
	reg.SetResolver(nil)
	if _, ok := reg.Lookup("dyn:echo", 1); ok {
		t.Error("resolver still used after SetResolver(nil)")
	}
}

func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	p := NewProcessor(reg)
	var wg sync.WaitGroup
	names := []string{"aa:bb", "cc:dd", "ee:ff", "gg:hh"}
	for _, n := range names {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = reg.Add(n, 1, constHandler(n))
		}()
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{"name": n, "version": 1, "payload": map[string]any{}})
			resp := p.Process(context.Background(), body)
			if resp.Name != n+":response" && resp.Name != n+":notFound" {
				t.Errorf("concurrent answer %q", resp.Name)
			}
		}()
	}
	wg.Wait()
	for _, n := range names {
		if _, ok := reg.Lookup(n, 1); !ok {
			t.Errorf("%s missing", n)
		}
	}
}
