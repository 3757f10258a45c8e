// Package conformance is connector-host's plugin conformance suite: it
// launches a plugin binary exactly as connector-host does (go-plugin
// handshake through the host's supervisor, calls through the host's router
// and HTTP API) and checks that the plugin honours the contract — a valid
// description, the error codes and envelopes, the fixture cases it ships,
// streams that end properly, cancellation, concurrency, clean logs without
// secrets, a prompt shutdown and a restart after a crash.
//
// In Go tests:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, "bin/connector-acme", conformance.Options{Fixtures: "testdata/conformance"})
//	}
//
// From a shell: connector-host conformance bin/connector-acme --fixtures testdata/conformance.
// docs/conformance.md describes every check and the fixture format.
package conformance

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// The checks, in the order they are reported.
const (
	CheckHandshake         = "handshake"
	CheckDescribe          = "describe"
	CheckUnknownCapability = "unknown_capability"
	CheckBadRequest        = "bad_request"
	CheckErrorEnvelope     = "error_envelope"
	CheckFixtures          = "fixtures"
	CheckStreaming         = "streaming"
	CheckCancellation      = "cancellation"
	CheckConcurrency       = "concurrency"
	CheckLogs              = "logs"
	CheckSecrets           = "secrets"
	CheckShutdown          = "shutdown"
	CheckRestart           = "restart"
)

// Checks lists every check in report order.
func Checks() []string {
	return []string{
		CheckHandshake, CheckDescribe, CheckUnknownCapability, CheckBadRequest, CheckErrorEnvelope,
		CheckFixtures, CheckStreaming, CheckCancellation, CheckConcurrency, CheckLogs, CheckSecrets,
		CheckShutdown, CheckRestart,
	}
}

// Status is a check's outcome.
type Status string

// Check outcomes. A SKIP always says why; it never hides a failure.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Options configure a conformance run. Zero values take the defaults.
type Options struct {
	// Fixtures is the directory of the plugin's fixture cases (one JSON
	// file per case, see docs/conformance.md). Empty runs the generic
	// checks only.
	Fixtures string
	// Env adds KEY=VALUE variables to the plugin's environment.
	Env []string
	// CallTimeout bounds each call (default 10 s).
	CallTimeout time.Duration
	// StartTimeout bounds the plugin's launch, handshake and Describe
	// (default 15 s).
	StartTimeout time.Duration
}

func (o *Options) defaults() {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 15 * time.Second
	}
}

// Limits of the checks (the contract's numbers).
const (
	// CancelWithin is how soon a cancelled call must end in the plugin.
	CancelWithin = time.Second
	// ConcurrentCalls is how many calls the concurrency check makes at once.
	ConcurrentCalls = 64
	// ShutdownWithin is how soon the plugin must exit when stopped.
	ShutdownWithin = 2 * time.Second
	// RestartWithin is how soon the plugin must be back after kill -9.
	RestartWithin = 5 * time.Second
)

// Run runs the suite against binary and reports each check as a subtest of
// t: a FAIL fails the subtest with its reason, a SKIP skips it with its
// reason. The plugin is built by the caller.
func Run(t *testing.T, binary string, opts Options) *Report {
	t.Helper()
	rep, err := Check(context.Background(), binary, opts)
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	t.Logf("conformance of %s (%s %s) in %v", binary, rep.AppID, rep.Version, rep.Duration.Round(time.Millisecond))
	for _, r := range rep.Results {
		t.Run(r.Check, func(t *testing.T) {
			msg := r.Reason
			if len(r.Details) > 0 {
				msg += "\n  " + strings.Join(r.Details, "\n  ")
			}
			switch r.Status {
			case Fail:
				t.Error(msg)
			case Skip:
				t.Skip(msg)
			default:
				t.Log(msg)
			}
		})
	}
	if rep.Failed() > 0 && rep.PluginLog != "" {
		t.Logf("plugin stderr (last lines):\n%s", rep.PluginLog)
	}
	return rep
}

// Check runs every check against binary and returns the report. The error
// is for problems of the run itself (e.g. no temporary directory); a
// plugin that fails checks is reported in the Report.
func Check(ctx context.Context, binary string, opts Options) (*Report, error) {
	opts.defaults()
	s, err := newSession(ctx, binary, opts)
	if err != nil {
		return nil, err
	}
	defer s.close()
	start := time.Now()
	results := map[string]Result{}
	run := func(name string, fn func() Result) {
		t0 := time.Now()
		r := safely(fn)
		r.Check = name
		r.Duration = time.Since(t0)
		results[name] = r
	}
	skipAll := func(reason string, names ...string) {
		for _, n := range names {
			if _, done := results[n]; !done {
				results[n] = Result{Check: n, Status: Skip, Reason: reason}
			}
		}
	}

	run(CheckHandshake, s.checkHandshake)
	if results[CheckHandshake].Status == Pass {
		run(CheckDescribe, s.checkDescribe)
		run(CheckUnknownCapability, s.checkUnknownCapability)
		run(CheckBadRequest, s.checkBadRequest)
		run(CheckFixtures, s.checkFixtures)
		run(CheckStreaming, s.checkStreaming)
		run(CheckConcurrency, s.checkConcurrency)
		run(CheckCancellation, s.checkCancellation)
		s.feedCanaries()
		run(CheckRestart, s.checkRestart)
		run(CheckShutdown, s.checkShutdown)
		run(CheckErrorEnvelope, s.checkErrorEnvelope)
		run(CheckSecrets, s.checkSecrets)
	} else {
		skipAll("not run: the plugin did not start (see handshake)",
			CheckDescribe, CheckUnknownCapability, CheckBadRequest, CheckErrorEnvelope, CheckFixtures,
			CheckStreaming, CheckCancellation, CheckConcurrency, CheckSecrets, CheckShutdown, CheckRestart)
	}
	s.stopAll()
	run(CheckLogs, s.checkLogs)

	rep := &Report{
		Binary:    binary,
		AppID:     s.appID,
		Version:   s.version(),
		Fixtures:  opts.Fixtures,
		Cases:     len(s.fixtures),
		Duration:  time.Since(start),
		PluginLog: s.pluginLogTail(40),
	}
	for _, name := range Checks() {
		r, ok := results[name]
		if !ok {
			r = Result{Check: name, Status: Skip, Reason: "not run"}
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// safely runs a check, turning a panic of the suite itself into a FAIL with
// the stack, so one broken check cannot hide the others.
func safely(fn func() Result) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Result{Status: Fail, Reason: fmt.Sprintf("the check itself panicked: %v", p), Details: strings.Split(string(debug.Stack()), "\n")}
		}
	}()
	return fn()
}

func pass(format string, args ...any) Result {
	return Result{Status: Pass, Reason: fmt.Sprintf(format, args...)}
}

func skip(format string, args ...any) Result {
	return Result{Status: Skip, Reason: fmt.Sprintf(format, args...)}
}

// failWith is a FAIL whose reason counts the problems and names the first;
// every problem is listed in the details.
func failWith(what string, problems []string) Result {
	reason := problems[0]
	if len(problems) > 1 {
		reason = fmt.Sprintf("%d %s; first: %s", len(problems), what, problems[0])
	}
	return Result{Status: Fail, Reason: reason, Details: capList(problems, 50)}
}

func capList(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(append([]string(nil), list[:n]...), fmt.Sprintf("... and %d more", len(list)-n))
}
