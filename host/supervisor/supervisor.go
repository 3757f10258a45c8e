// Package supervisor launches plugin processes with go-plugin and keeps them
// running: it detects crashes the moment a process exits, restarts it with
// capped exponential backoff and jitter, health-checks it, and marks a
// crash-looping plugin failed without ever taking the host down.
package supervisor

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"

	"github.com/connector-host/connector-host/internal/plugintls"
	"github.com/connector-host/connector-host/internal/wire"
)

// State is a supervised plugin's state.
type State string

// Plugin states.
const (
	Starting   State = "starting"
	Ready      State = "ready"
	Restarting State = "restarting"
	Failed     State = "failed"
	Stopped    State = "stopped"
)

// MaxMessageBytes is the largest gRPC message exchanged with a plugin.
const MaxMessageBytes = 64 << 20

// Options configure a Supervisor. Zero values take the defaults.
type Options struct {
	Binary Binary
	// SHA256, when set, pins the binary: it must hash to this value
	// (checked with go-plugin's SecureConfig before every launch).
	SHA256 []byte
	// Env is the plugin's environment (the host's is not inherited).
	Env []string
	// Logger receives the plugin's log lines, tagged with its app_id.
	Logger hclog.Logger
	// Callback, when set, is served to the plugin over the go-plugin broker.
	Callback wire.Callback
	// StartTimeout bounds launch + handshake + Describe (default 20s).
	StartTimeout time.Duration
	// HealthInterval is the period of health checks (default 10s).
	HealthInterval time.Duration
	// InitialBackoff, MaxBackoff bound restart delays (defaults 50ms, 30s).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// StableAfter is how long a process must live for its crash count to
	// reset (default 30s).
	StableAfter time.Duration
	// FailAfter consecutive crashes mark the plugin failed (default 5).
	FailAfter int
	// OnRestart is called after each restart (for metrics).
	OnRestart func()
	// PatchDescription, when set, adjusts each Describe answer before it
	// is cached (the host applies operator overrides with it).
	PatchDescription func(*wire.Description)
}

func (o *Options) defaults() {
	if o.StartTimeout == 0 {
		o.StartTimeout = 20 * time.Second
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = 10 * time.Second
	}
	if o.InitialBackoff == 0 {
		o.InitialBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.StableAfter == 0 {
		o.StableAfter = 30 * time.Second
	}
	if o.FailAfter == 0 {
		o.FailAfter = 5
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
}

// Instance is one running plugin process.
type Instance struct {
	// Conn calls the plugin.
	Conn *wire.Client
	// Description is the plugin's Describe answer, cached for the life of
	// the process.
	Description *wire.Description
	// Generation counts the process starts of this plugin, from 1.
	Generation int

	client  *plugin.Client
	proc    *processRunner
	started time.Time
}

// PID is the plugin process id.
func (in *Instance) PID() int { return in.proc.pid }

// Exited is closed when the instance's process has exited.
func (in *Instance) Exited() <-chan struct{} { return in.proc.exited }

// Supervisor keeps one plugin running.
type Supervisor struct {
	opts Options

	mu       sync.Mutex
	state    State
	current  *Instance
	readyCh  chan struct{} // closed while a ready instance exists
	lastErr  error
	crashes  int // consecutive
	restarts int
	gen      int

	// ready and last mirror state and current for the readers of every
	// call (Acquire, Description), which then take no lock: ready is the
	// current instance while the state is Ready, else nil; last is
	// current. Both are stored under mu (see publish).
	ready atomic.Pointer[Instance]
	last  atomic.Pointer[Instance]

	firstAttempt chan struct{} // closed after the first launch attempt
	stopOnce     sync.Once
	stopCh       chan struct{}
	done         chan struct{}
}

// New returns a Supervisor; Start launches the plugin.
func New(opts Options) *Supervisor {
	opts.defaults()
	return &Supervisor{
		opts:         opts,
		state:        Starting,
		readyCh:      make(chan struct{}),
		firstAttempt: make(chan struct{}),
		stopCh:       make(chan struct{}),
		done:         make(chan struct{}),
	}
}

// AppID is the supervised plugin's app_id.
func (s *Supervisor) AppID() string { return s.opts.Binary.AppID }

// Start launches the plugin and waits until its first launch succeeded or
// failed (the supervisor keeps retrying in the background after a failure),
// or ctx ends.
func (s *Supervisor) Start(ctx context.Context) error {
	go s.loop()
	select {
	case <-s.firstAttempt:
		return s.LastError()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Acquire returns the running instance, waiting for a (re)start until ctx
// ends. It fails fast when the plugin is failed or stopped.
func (s *Supervisor) Acquire(ctx context.Context) (*Instance, error) {
	if inst := s.ready.Load(); inst != nil {
		select {
		case <-inst.Exited(): // the loop below waits for the restart
		default:
			return inst, nil
		}
	}
	for {
		s.mu.Lock()
		inst, st, ready, lastErr := s.current, s.state, s.readyCh, s.lastErr
		s.mu.Unlock()
		switch {
		case st == Ready && inst != nil:
			select {
			case <-inst.Exited():
				// The process is gone and the loop has not noticed yet:
				// wait for the restart rather than hand out a dead one.
				s.ReportBroken(inst)
				continue
			default:
				return inst, nil
			}
		case st == Stopped:
			return nil, ErrStopped
		case st == Failed:
			return nil, &FailedError{AppID: s.AppID(), Err: lastErr}
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, ErrStopped
		}
	}
}

// Current returns the running instance, or nil.
func (s *Supervisor) Current() *Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != Ready {
		return nil
	}
	return s.current
}

// ErrStopped is returned by Acquire after Stop.
var ErrStopped = errors.New("plugin stopped")

// FailedError is returned by Acquire for a plugin that keeps crashing or
// cannot start.
type FailedError struct {
	AppID string
	Err   error
}

func (e *FailedError) Error() string {
	msg := "plugin " + e.AppID + " is failed (crash loop or cannot start)"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *FailedError) Unwrap() error { return e.Err }

// Status reports the state, the number of restarts, and the last launch or
// crash error.
func (s *Supervisor) Status() (State, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.restarts, s.lastErr
}

// LastError is the last launch or crash error.
func (s *Supervisor) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Description returns the Describe answer of the running (or last) process.
func (s *Supervisor) Description() *wire.Description {
	if inst := s.last.Load(); inst != nil {
		return inst.Description
	}
	return nil
}

// publish mirrors state and current into ready and last; called with mu
// held after every change of either.
func (s *Supervisor) publish() {
	s.last.Store(s.current)
	if s.state == Ready && s.current != nil {
		s.ready.Store(s.current)
	} else {
		s.ready.Store(nil)
	}
}

// ReportBroken tells the supervisor a call saw the connection break; if the
// process is gone the loop is already restarting it, otherwise this is a
// no-op (the health check decides).
func (s *Supervisor) ReportBroken(inst *Instance) {
	select {
	case <-inst.Exited():
		s.mu.Lock()
		if s.current == inst && s.state == Ready {
			s.state = Restarting
			s.readyCh = make(chan struct{})
			s.publish()
		}
		s.mu.Unlock()
	default:
	}
}

// Stop kills the plugin (gracefully first, as go-plugin does) and waits for
// the supervisor to finish.
func (s *Supervisor) Stop() {
	s.stopOnce.Do(func() { close(s.stopCh) })
	<-s.done
}

func (s *Supervisor) loop() {
	defer close(s.done)
	var first sync.Once
	defer first.Do(func() { close(s.firstAttempt) })
	for {
		inst, err := s.launch()
		if err != nil {
			s.opts.Logger.Error("plugin failed to start", "error", err)
			s.recordFailure(err)
			first.Do(func() { close(s.firstAttempt) })
		} else {
			s.setReady(inst)
			first.Do(func() { close(s.firstAttempt) })
			err = s.watch(inst)
			if err == nil { // stopped
				s.kill(inst)
				s.setState(Stopped)
				return
			}
			s.opts.Logger.Error("plugin process exited unexpectedly; restarting", "error", err)
			s.kill(inst)
			if time.Since(inst.started) >= s.opts.StableAfter {
				s.mu.Lock()
				s.crashes = 0
				s.mu.Unlock()
			}
			s.recordFailure(err)
		}
		select {
		case <-s.stopCh:
			s.setState(Stopped)
			return
		case <-time.After(s.backoff()):
		}
	}
}

// watch blocks until the instance exits, fails its health checks, or the
// supervisor is stopped (nil).
func (s *Supervisor) watch(inst *Instance) error {
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-s.stopCh:
			return nil
		case <-inst.Exited():
			s.ReportBroken(inst)
			if inst.proc.exitErr != nil {
				return fmt.Errorf("process exited: %w", inst.proc.exitErr)
			}
			return errors.New("process exited")
		case <-t.C:
			if err := s.ping(inst); err != nil {
				misses++
				s.opts.Logger.Warn("plugin health check failed", "error", err, "misses", misses)
				if misses >= 3 {
					return fmt.Errorf("health check failed 3 times: %w", err)
				}
				continue
			}
			misses = 0
		}
	}
}

func (s *Supervisor) ping(inst *Instance) error {
	rpc, err := inst.client.Client()
	if err != nil {
		return err
	}
	return rpc.Ping()
}

func (s *Supervisor) setReady(inst *Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = inst
	s.lastErr = nil
	if s.crashes >= s.opts.FailAfter {
		// Up again after a crash loop: serve, but stay "failed" in
		// readiness until it proves stable (see Ready).
		s.opts.Logger.Info("plugin up again after a crash loop")
	}
	s.state = Ready
	s.publish()
	close(s.readyCh)
	if inst.Generation > 1 {
		s.restarts++
		if s.opts.OnRestart != nil {
			s.opts.OnRestart()
		}
	}
}

// Healthy reports whether the plugin is ready and not in a crash loop.
func (s *Supervisor) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != Ready || s.current == nil {
		return false
	}
	if s.crashes >= s.opts.FailAfter && time.Since(s.current.started) < s.opts.StableAfter {
		return false
	}
	return true
}

func (s *Supervisor) recordFailure(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	s.crashes++
	if s.state == Ready {
		s.readyCh = make(chan struct{})
	}
	if s.crashes >= s.opts.FailAfter {
		s.state = Failed
	} else {
		s.state = Restarting
	}
	s.publish()
}

func (s *Supervisor) setState(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == Ready && st != Ready {
		s.readyCh = make(chan struct{})
	}
	s.state = st
	s.publish()
}

// backoff is the delay before the next launch: capped exponential in the
// number of consecutive failures, with jitter in [d/2, d].
func (s *Supervisor) backoff() time.Duration {
	s.mu.Lock()
	n := s.crashes
	s.mu.Unlock()
	d := s.opts.InitialBackoff
	for i := 1; i < n && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opts.MaxBackoff)
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1)) //nolint:gosec // G404: restart jitter, not a secret
}

func (s *Supervisor) kill(inst *Instance) {
	inst.client.Kill()
}

// launch starts a process, completes the handshake and calls Describe.
func (s *Supervisor) launch() (*Instance, error) {
	bin := s.opts.Binary
	if len(s.opts.SHA256) > 0 {
		sc := &plugin.SecureConfig{Checksum: s.opts.SHA256, Hash: sha256.New()}
		ok, err := sc.Check(bin.Path)
		if err != nil {
			return nil, fmt.Errorf("checking the SHA-256 of %s: %w", bin.Path, err)
		}
		if !ok {
			return nil, fmt.Errorf("plugin %s: SHA-256 does not match the pinned checksum; refusing to run it", bin.Path)
		}
	}
	keys, err := plugintls.New()
	if err != nil {
		return nil, fmt.Errorf("generating the plugin's TLS certificates: %w", err)
	}
	var proc *processRunner
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.PluginSets(nil, s.opts.Callback),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			cmd.Path = bin.Path
			cmd.Args = []string{bin.Path}
			cmd.Env = append(cmd.Env, s.opts.Env...)
			cmd.Stdin = nil
			// mTLS with certificates the host made (ADR 0007): its own as
			// go-plugin's AutoMTLS sends it, the plugin's on descriptor 3.
			pipe, err := keys.Pipe()
			if err != nil {
				return nil, err
			}
			cmd.ExtraFiles = []*os.File{pipe}
			cmd.Env = append(cmd.Env, plugintls.EnvClientCert+"="+string(keys.HostCertPEM), plugintls.EnvFD+"=3")
			p, err := newProcessRunner(cmd)
			if err != nil {
				_ = pipe.Close()
				return nil, err
			}
			proc = p
			return p, nil
		},
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		TLSConfig:        keys.ClientConfig(),
		Logger:           s.opts.Logger,
		StartTimeout:     s.opts.StartTimeout,
		// Fixed flow-control windows (no BDP growth up to 16 MB): a stream
		// the HTTP client reads slowly holds at most wire.StreamWindow in
		// the host.
		GRPCDialOptions: append([]grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		}, wire.DialWindows()...),
	})
	started := time.Now()
	fail := func(err error) (*Instance, error) {
		client.Kill()
		return nil, err
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(fmt.Errorf("starting %s: %w", bin.Path, err))
	}
	raw, err := rpc.Dispense(wire.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispensing the connector plugin: %w", err))
	}
	conn, ok := raw.(*wire.Client)
	if !ok {
		return fail(fmt.Errorf("plugin speaks an unexpected protocol (%T)", raw))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StartTimeout)
	defer cancel()
	desc, err := conn.Describe(ctx)
	if err != nil {
		return fail(fmt.Errorf("describe: %w", err))
	}
	if bin.AppID != "" && desc.AppID != bin.AppID {
		return fail(fmt.Errorf("binary %s describes itself as app_id %q; rename it connector-%s", bin.Path, desc.AppID, desc.AppID))
	}
	if s.opts.PatchDescription != nil {
		s.opts.PatchDescription(desc)
	}
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.mu.Unlock()
	s.opts.Logger.Debug("plugin ready", "version", desc.Version, "pid", proc.pid, "generation", gen, "protocol", client.NegotiatedVersion())
	return &Instance{Conn: conn, Description: desc, Generation: gen, client: client, proc: proc, started: started}, nil
}

// HostEnv returns the few variables of the host's environment a plugin
// needs (PATH, HOME, TMPDIR, locale, time zone, TLS roots); nothing else,
// so host secrets in the environment never reach plugins.
func HostEnv() []string {
	var out []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "GODEBUG", "GOMAXPROCS", "GOMEMLIMIT"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}
