package supervisor_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/connector-host/connector-host/host/supervisor"
	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
	"github.com/connector-host/connector-host/testkit/harness"
)

func TestDiscover(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("connector-b", 0o755)
	write("connector-a-b", 0o755)
	write("connector-noexec", 0o644)
	write("connector-Bad", 0o755)
	write("other", 0o755)
	_ = os.Mkdir(filepath.Join(dir, "connector-dir"), 0o755)
	bins, err := supervisor.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range bins {
		ids = append(ids, b.AppID)
		if !filepath.IsAbs(b.Path) {
			t.Errorf("path %s is not absolute", b.Path)
		}
	}
	if strings.Join(ids, ",") != "a-b,b" {
		t.Fatalf("discovered %v", ids)
	}
	if _, err := supervisor.Discover(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing dir: %v", err)
	}
}

func startSup(t *testing.T, opts supervisor.Options) (*supervisor.Supervisor, error) {
	t.Helper()
	if opts.InitialBackoff == 0 {
		opts.InitialBackoff = 10 * time.Millisecond
	}
	s := supervisor.New(opts)
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s, s.Start(ctx)
}

func TestStartDescribeAndStop(t *testing.T) {
	t.Parallel()
	bin := harness.Reference(t)
	s, err := startSup(t, supervisor.Options{Binary: supervisor.Binary{AppID: "reference", Path: bin}})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := s.Acquire(context.Background())
	if err != nil || inst.Description.AppID != "reference" || inst.Generation != 1 || !s.Healthy() {
		t.Fatalf("acquire: %v %+v", err, inst)
	}
	s.Stop()
	select {
	case <-inst.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("process still running after Stop")
	}
	if _, err := s.Acquire(context.Background()); !errors.Is(err, supervisor.ErrStopped) {
		t.Fatalf("acquire after stop: %v", err)
	}
}

func TestSHA256Pinning(t *testing.T) {
	t.Parallel()
	bin := harness.Reference(t)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if _, err := startSup(t, supervisor.Options{Binary: supervisor.Binary{AppID: "reference", Path: bin}, SHA256: sum[:]}); err != nil {
		t.Fatalf("right checksum refused: %v", err)
	}
	wrong := sum
	wrong[0] ^= 0xff
	s, err := startSup(t, supervisor.Options{Binary: supervisor.Binary{AppID: "reference", Path: bin}, SHA256: wrong[:], FailAfter: 1})
	if err == nil || !strings.Contains(err.Error(), "SHA-256 does not match") {
		t.Fatalf("wrong checksum: %v", err)
	}
	if st, _, _ := s.Status(); st != supervisor.Failed {
		t.Fatalf("state %s, want failed", st)
	}
}

func TestWrongAppIDRefused(t *testing.T) {
	t.Parallel()
	_, err := startSup(t, supervisor.Options{Binary: supervisor.Binary{AppID: "other", Path: harness.Reference(t)}})
	if err == nil || !strings.Contains(err.Error(), `app_id "reference"`) {
		t.Fatalf("got %v", err)
	}
}

// TestCrashLoopMarksFailed runs a "plugin" that exits at once.
func TestCrashLoopMarksFailed(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "connector-broken")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho broken >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := startSup(t, supervisor.Options{Binary: supervisor.Binary{AppID: "broken", Path: bin}, FailAfter: 3, MaxBackoff: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("a plugin that exits at once started")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _, _ := s.Status()
		if st == supervisor.Failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s after 10s, want failed", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var fe *supervisor.FailedError
	if _, err := s.Acquire(context.Background()); !errors.As(err, &fe) {
		t.Fatalf("acquire on a failed plugin: %v", err)
	}
	if s.Healthy() {
		t.Fatal("a failed plugin reports healthy")
	}
}

func TestRestartAfterKill(t *testing.T) {
	t.Parallel()
	restarts := make(chan struct{}, 4)
	s, err := startSup(t, supervisor.Options{
		Binary:    supervisor.Binary{AppID: "reference", Path: harness.Reference(t)},
		OnRestart: func() { restarts <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Current()
	pid := first.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarts:
	case <-time.After(5 * time.Second):
		t.Fatal("no restart within 5s of SIGKILL")
	}
	inst, err := s.Acquire(context.Background())
	if err != nil || inst.Generation != 2 || inst.PID() == pid {
		t.Fatalf("after restart: %v gen %d", err, inst.Generation)
	}
	if _, n, _ := s.Status(); n != 1 {
		t.Fatalf("restarts = %d", n)
	}
}

// The host's mTLS (ADR 0007): an sdk plugin serves with the P-256
// certificate the host made for it; a plugin on plain go-plugin (the
// minimal one, no sdk) answers go-plugin's AutoMTLS with a P-521
// certificate of its own, which the host then trusts. Both complete a call
// over TLS with a client certificate.
func TestMutualTLSBothWays(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, appID, path string
		curve             elliptic.Curve
	}{
		{"sdk plugin, host-made P-256", "reference", harness.Reference(t), elliptic.P256()},
		{"plain go-plugin AutoMTLS", "minimal", harness.Build(t, "./testkit/cmd/minimalplugin", "connector-minimal"), elliptic.P521()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := startSup(t, supervisor.Options{Binary: supervisor.Binary{AppID: c.appID, Path: c.path}})
			if err != nil {
				t.Fatal(err)
			}
			inst, err := s.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var p peer.Peer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := pb.NewConnectorClient(inst.Conn.Conn()).Describe(ctx, &pb.DescribeRequest{}, grpc.Peer(&p)); err != nil {
				t.Fatal(err)
			}
			info, ok := p.AuthInfo.(credentials.TLSInfo)
			if !ok {
				t.Fatalf("the connection is not TLS: %T", p.AuthInfo)
			}
			key, ok := info.State.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey)
			if !ok || key.Curve != c.curve {
				t.Fatalf("plugin certificate key %T, want ECDSA on %s", info.State.PeerCertificates[0].PublicKey, c.curve.Params().Name)
			}
		})
	}
}
