// Package benchkit holds what the `make bench` programs share: a
// `connector-host serve` process started with chosen plugins and config,
// free loopback addresses, process memory from /proc, and the machine line
// every report starts with. Each bench keeps its own measurements and
// baselines; only the plumbing lives here.
package benchkit

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// ServeOptions configure a `connector-host serve` process.
type ServeOptions struct {
	// Host is the connector-host binary.
	Host string
	// Plugins maps an app_id to its plugin binary; each is linked into the
	// plugin directory as connector-<app_id>.
	Plugins map[string]string
	// Connectors is the config file's `connectors` section (per app_id:
	// settings, timeout, env, ...).
	Connectors map[string]any
	// Config adds other top-level config keys (listen, plugins_dir and
	// data_dir are set by StartServe; log_level defaults to warn).
	Config map[string]any
	// Env adds environment variables to the host process.
	Env []string
	// ReadyTimeout bounds the wait for /readyz (default 60 s).
	ReadyTimeout time.Duration
}

// Serve is a running `connector-host serve`.
type Serve struct {
	// URL is the host's base URL (http://127.0.0.1:port).
	URL string
	// Dir holds the plugin links, the config and the data directory; Stop
	// removes it.
	Dir string

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// StartServe starts the host and waits until /readyz answers 200.
func StartServe(o ServeOptions) (*Serve, error) {
	dir, err := os.MkdirTemp("", "connector-host-bench-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Serve, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o700); err != nil {
		return fail(err)
	}
	for appID, bin := range o.Plugins {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return fail(err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fail(fmt.Errorf("plugin %s: %w (run `make build` first)", appID, err))
		}
		if err := os.Symlink(abs, filepath.Join(plugins, "connector-"+appID)); err != nil {
			return fail(err)
		}
	}
	addr, err := FreeAddr()
	if err != nil {
		return fail(err)
	}
	cfg := map[string]any{"log_level": "warn"}
	for k, v := range o.Config {
		cfg[k] = v
	}
	cfg["listen"], cfg["plugins_dir"], cfg["data_dir"] = addr, plugins, filepath.Join(dir, "data")
	if o.Connectors != nil {
		cfg["connectors"] = o.Connectors
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return fail(err)
	}
	cfgPath := filepath.Join(dir, "connector-host.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		return fail(err)
	}
	s := &Serve{URL: "http://" + addr, Dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(o.Host, "serve", "--config", cfgPath) //nolint:gosec // the bench's own host binary
	s.cmd.Env = append(os.Environ(), o.Env...)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		return fail(fmt.Errorf("%s: %w (run `make build` first)", o.Host, err))
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if err := s.waitReady(timeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Serve) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-s.done:
			return fmt.Errorf("connector-host exited: %w", s.waitErr)
		default:
		}
		if resp, err := client.Get(s.URL + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("connector-host not ready within %v", timeout)
}

// PID is the host process id.
func (s *Serve) PID() int { return s.cmd.Process.Pid }

// PluginPID finds the process of the plugin loaded as appID (a child of the
// host running connector-<app_id>).
func (s *Serve) PluginPID(appID string) (int, error) {
	for _, pid := range Children(s.PID()) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		if filepath.Base(exe) == "connector-"+appID || strings.HasSuffix(cmdline(pid), "connector-"+appID) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no plugin process connector-%s under the host (pid %d)", appID, s.PID())
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	first, _, _ := strings.Cut(string(b), "\x00")
	return first
}

// Stop sends SIGTERM, waits (kills after 15 s) and removes Dir. Calls
// after the first do nothing.
func (s *Serve) Stop() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		_ = os.RemoveAll(s.Dir)
	})
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

// StatusBytes reads a kB field of /proc/PID/status (VmRSS, VmHWM, ...) in
// bytes.
func StatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// RSS is the resident set size of pid in bytes (0 when unreadable).
func RSS(pid int) int64 {
	n, _ := StatusBytes(pid, "VmRSS")
	return n
}

// Children lists the child processes of pid (started by any of its
// threads).
func Children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// MiB formats bytes as MiB.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Machine describes the machine for a report: CPUs and model, memory, Go
// version, OS/arch and today's date.
func Machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	mem := ""
	if n, err := memTotal(); err == nil {
		mem = fmt.Sprintf(", %.0f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%d × %s%s, %s %s/%s, GOMAXPROCS=%d, %s", runtime.NumCPU(), cpu, mem, runtime.Version(),
		runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), time.Now().UTC().Format("2006-01-02"))
}

func memTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("/proc/meminfo has no MemTotal")
}

// clockTick is USER_HZ, the unit of the times in /proc/<pid>/stat.
const clockTick = 100

// CPU is the user + system CPU time of pid so far (0 when unreadable).
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: the fields follow the
	// last ')'. utime and stime are fields 14 and 15.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / clockTick
}

// SelfCPU is the user + system CPU time of this process so far.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Finish ends a bench program: it prints report, also writes it to out
// when out is set, and exits 1 with the program's name on err.
func Finish(prog, report, out string, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, prog+":", err)
		os.Exit(1)
	}
	fmt.Print(report)
	if out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil { //nolint:gosec // a report to read and publish (docs/), not a secret
			fmt.Fprintln(os.Stderr, prog+":", err)
			os.Exit(1)
		}
	}
}

// EnvFlag is a repeatable K=V flag (e.g. -plugin-env GOGC=200).
type EnvFlag map[string]string

// String implements flag.Value.
func (e EnvFlag) String() string {
	keys := make([]string, 0, len(e))
	for k, v := range e {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

// Set implements flag.Value.
func (e EnvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want K=V")
	}
	e[k] = v
	return nil
}
