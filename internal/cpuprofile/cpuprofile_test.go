package cpuprofile

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	if got := FromEnv("CPUPROFILE_TEST_UNSET"); got != "" {
		t.Fatalf("unset variable started a profile at %q", got)
	}
	dir := t.TempDir()
	t.Setenv("CPTEST_CPUPROFILE", filepath.Join(dir, "cpu-{pid}.pprof"))
	t.Setenv("CPTEST_CPUPROFILE_SECONDS", "1")
	path := FromEnv("CPTEST")
	want := filepath.Join(dir, "cpu-"+strconv.Itoa(os.Getpid())+".pprof")
	if path != want {
		t.Fatalf("path %q, want %q", path, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no profile written after its 1 s")
}
