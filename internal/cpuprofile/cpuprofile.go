// Package cpuprofile lets a plugin's profiling build write a CPU profile of
// its process, configured by environment variables (which the host passes
// with connectors.<app_id>.env). Plugins import it only from a file behind
// a build tag (e.g. `go build -tags stoaprofile`), so released plugins never
// carry it.
package cpuprofile

import (
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// DefaultSeconds is how long a profile covers unless configured.
const DefaultSeconds = 60

// FromEnv starts a CPU profile written to $<PREFIX>_CPUPROFILE ("{pid}" in
// it is replaced by the process id), covering the first
// $<PREFIX>_CPUPROFILE_SECONDS (default 60) seconds, and returns the path;
// "" when the variable is unset or the profile cannot start. Errors are
// not reported: this is a measuring aid.
func FromEnv(prefix string) string {
	path := os.Getenv(prefix + "_CPUPROFILE")
	if path == "" {
		return ""
	}
	secs, err := strconv.Atoi(os.Getenv(prefix + "_CPUPROFILE_SECONDS"))
	if err != nil || secs <= 0 {
		secs = DefaultSeconds
	}
	path = strings.ReplaceAll(path, "{pid}", strconv.Itoa(os.Getpid()))
	f, err := os.Create(path) //nolint:gosec // G304/G703: the operator's own path, in a measuring build
	if err != nil {
		return ""
	}
	if pprof.StartCPUProfile(f) != nil {
		_ = f.Close()
		return ""
	}
	time.AfterFunc(time.Duration(secs)*time.Second, func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	})
	return path
}
