package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// processRunner runs a plugin binary for go-plugin (runner.Runner) and
// closes exited when the process ends, so the supervisor learns of a crash
// at once instead of polling.
type processRunner struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser
	path   string
	pid    int

	exited   chan struct{}
	exitOnce sync.Once
	exitErr  error
}

func newProcessRunner(cmd *exec.Cmd) (*processRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	// Own process group: a Ctrl-C at the terminal reaches only the host,
	// which then stops its plugins in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return &processRunner{cmd: cmd, stdout: stdout, stderr: stderr, path: cmd.Path, exited: make(chan struct{})}, nil
}

func (r *processRunner) Start(context.Context) error {
	err := r.cmd.Start()
	// The child has its copies of the extra descriptors (or never will).
	for _, f := range r.cmd.ExtraFiles {
		_ = f.Close()
	}
	if err != nil {
		r.markExited(err)
		return err
	}
	r.pid = r.cmd.Process.Pid
	return nil
}

func (r *processRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.markExited(err)
	return err
}

func (r *processRunner) markExited(err error) {
	r.exitOnce.Do(func() {
		r.exitErr = err
		close(r.exited)
	})
}

func (r *processRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *processRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *processRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *processRunner) Name() string          { return r.path }
func (r *processRunner) ID() string            { return fmt.Sprint(r.pid) }

func (r *processRunner) Diagnose(context.Context) string {
	return "the plugin exited or did not complete the go-plugin handshake; check that it is a connector-host plugin built for this platform, and see its log lines above"
}

func (r *processRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *processRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
