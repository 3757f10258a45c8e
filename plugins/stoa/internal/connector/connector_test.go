package connector

import (
	"testing"
)

func TestIntegrationValidates(t *testing.T) {
	t.Parallel()
	if err := New().Validate(); err != nil {
		t.Fatalf("integration: %v", err)
	}
}
