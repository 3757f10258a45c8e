package redact

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestSetMasksLiveSecretsOnly(t *testing.T) {
	t.Parallel()
	s := NewSet()
	release := s.Add("canary-secret-123", "abc") // "abc" is too short to be a secret
	if got := s.String("token=canary-secret-123 abc"); got != "token="+Mask+" abc" {
		t.Fatalf("masked = %q", got)
	}
	release()
	release() // idempotent
	if got := s.String("token=canary-secret-123"); got != "token=canary-secret-123" {
		t.Fatalf("after release = %q", got)
	}
}

func TestSetRefCounts(t *testing.T) {
	t.Parallel()
	s := NewSet()
	r1 := s.Add("shared-secret")
	r2 := s.Add("shared-secret")
	r1()
	if got := s.String("shared-secret"); got != Mask {
		t.Fatalf("still referenced, got %q", got)
	}
	r2()
	if got := s.String("shared-secret"); got != "shared-secret" {
		t.Fatalf("released, got %q", got)
	}
}

func TestWriterMasksJSONEscapedForm(t *testing.T) {
	t.Parallel()
	s := NewSet()
	defer s.Add(`pa"ss\word`)()
	var buf bytes.Buffer
	w := s.Writer(&buf)
	line := `{"@message":"login","password":"pa\"ss\\word"}` + "\n"
	n, err := w.Write([]byte(line))
	if err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if strings.Contains(buf.String(), `pa\"ss`) || !strings.Contains(buf.String(), Mask) {
		t.Fatalf("secret leaked: %s", buf.String())
	}
}

func TestLongestSecretMaskedWhole(t *testing.T) {
	t.Parallel()
	s := NewSet()
	defer s.Add("secret")()
	defer s.Add("secret-and-more")()
	if got := s.String("x secret-and-more y"); got != "x "+Mask+" y" {
		t.Fatalf("got %q", got)
	}
}

func TestConcurrentAddAndWrite(t *testing.T) {
	t.Parallel()
	s := NewSet()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var buf bytes.Buffer
	w := s.Writer(&lockedWriter{mu: &mu, w: &buf})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release := s.Add("concurrent-canary")
			_, _ = w.Write([]byte("value concurrent-canary\n"))
			release()
		}()
	}
	wg.Wait()
	if strings.Contains(buf.String(), "concurrent-canary") {
		t.Fatal("secret leaked under concurrency")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestStringsIn(t *testing.T) {
	t.Parallel()
	doc := map[string]any{"basic": map[string]any{"username": "u1", "password": "p1"}, "list": []any{"x", 1.0}}
	got := StringsIn(doc)
	want := map[string]bool{"u1": true, "p1": true, "x": true}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for _, g := range got {
		if !want[g] {
			t.Fatalf("unexpected %q", g)
		}
	}
}
