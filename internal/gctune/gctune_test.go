package gctune

import (
	"runtime/debug"
	"testing"
)

// Not parallel: the GC settings are process-wide.
func TestApply(t *testing.T) {
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	cases := []struct {
		name        string
		env         map[string]string
		percent     int
		limit       int64
		wantPercent int
		wantLimit   int64
	}{
		{"defaults applied", nil, 400, 256 << 20, 400, 256 << 20},
		{"operator GOGC wins", map[string]string{"GOGC": "50"}, 400, 256 << 20, 100, 256 << 20},
		{"operator GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "1GiB"}, 400, 256 << 20, 400, -1},
		{"zero leaves alone", nil, 0, 0, 100, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1<<63 - 1)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			Apply(c.percent, c.limit)
			if got := debug.SetGCPercent(100); got != c.wantPercent {
				t.Errorf("GC percent = %d, want %d", got, c.wantPercent)
			}
			got := debug.SetMemoryLimit(-1)
			if c.wantLimit == -1 {
				if got != 1<<63-1 {
					t.Errorf("memory limit = %d, want unchanged", got)
				}
			} else if got != c.wantLimit {
				t.Errorf("memory limit = %d, want %d", got, c.wantLimit)
			}
		})
	}
}
