package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/connector-host/connector-host/internal/wire"
)

// capability returns the described capability, if any.
func (s *session) capability(name string) (wire.Capability, bool) {
	if s.desc == nil {
		return wire.Capability{}, false
	}
	return s.desc.Capability(name)
}

// checkFixtures runs every fixture case once, in file name order.
func (s *session) checkFixtures() Result {
	var problems []string
	if s.fixtureErr != nil {
		for _, line := range strings.Split(s.fixtureErr.Error(), "\n") {
			problems = append(problems, "fixture file "+line)
		}
	}
	if len(s.fixtures) == 0 && len(problems) == 0 {
		if s.opts.Fixtures == "" {
			return skip("no fixtures given (pass --fixtures DIR, e.g. testdata/conformance; see docs/conformance.md)")
		}
		return skip("no fixture cases (*.json) in %s", s.opts.Fixtures)
	}
	ran, slow := 0, 0
	for _, f := range s.fixtures {
		if f.Slow {
			slow++
			continue
		}
		gen := s.generation()
		o := s.call(s.ctx, f.Capability, f.envelopeJSON(), "", "fixture "+f.Name)
		ran++
		if o.Err != nil && o.Err.code() == "connection_closed" {
			// The case made the process exit (e.g. a crash case): wait
			// for the host to restart it before the next case.
			s.waitUntil(RestartWithin, func() bool { return s.generation() > gen })
		}
		s.mu.Lock()
		s.baselines[f.Name] = o
		s.mu.Unlock()
		for _, p := range s.judge(f, o) {
			problems = append(problems, fmt.Sprintf("%s (%s): %s", f.Name, f.Capability, p))
		}
	}
	if len(problems) > 0 {
		return failWith("problems", problems)
	}
	note := ""
	if slow > 0 {
		note = fmt.Sprintf(" (%s left to the cancellation check)", plural(slow, "slow case"))
	}
	return pass("%s answered as expected%s", plural(ran, "fixture case"), note)
}

// judge compares an outcome with a fixture's expectation and returns every
// difference.
func (s *session) judge(f *Fixture, o *outcome) []string {
	if o.Transport != nil || o.Malformed != "" {
		return []string{o.summary()}
	}
	e := f.Expect
	capa, known := s.capability(f.Capability)
	streaming := o.Stream || (known && capa.Streaming)
	var problems []string
	if code := f.expectedCode(); code != "" {
		want := s.appID + "." + code
		if o.Err == nil {
			return []string{fmt.Sprintf("want error %s, got %s", want, o.summary())}
		}
		if o.Err.ErrorCode != want {
			problems = append(problems, fmt.Sprintf("want error %s, got %s", want, o.summary()))
		}
		for _, sub := range e.MessageContains {
			if !strings.Contains(o.Err.Message, sub) {
				problems = append(problems, fmt.Sprintf("the error message does not contain %q: %q", sub, cut(o.Err.Message, 200)))
			}
		}
		if e.Final == "page" || (o.Stream && o.Final != "error") {
			problems = append(problems, "the stream did not end with an error line")
		}
		return problems
	}
	if o.Err != nil {
		return []string{"want success, got " + o.summary()}
	}
	sch := s.respSchemas[f.Capability]
	if streaming {
		if !o.Stream {
			return []string{"want a stream (NDJSON), got a unary answer"}
		}
		want := e.Final
		if want == "" {
			want = "page"
		}
		if o.Final != want {
			problems = append(problems, fmt.Sprintf("the stream must end with a %q line, got %s", want, o.summary()))
		}
		for i, it := range o.Items {
			if sch != nil {
				if msg := validationMessage(sch, it); msg != "" {
					problems = append(problems, fmt.Sprintf("item %d does not validate against the item schema: %s", i, msg))
				}
			}
		}
		if e.ItemCount != nil && len(o.Items) != *e.ItemCount {
			problems = append(problems, fmt.Sprintf("want %d items, got %d", *e.ItemCount, len(o.Items)))
		}
		if len(e.Items) > 0 {
			if len(o.Items) != len(e.Items) {
				problems = append(problems, fmt.Sprintf("want %d items, got %d", len(e.Items), len(o.Items)))
			} else {
				for i := range e.Items {
					problems = append(problems, matchRaw(fmt.Sprintf("items[%d]", i), e.Items[i], o.Items[i])...)
				}
			}
		}
		if len(e.Page) > 0 {
			problems = append(problems, matchRaw("page", e.Page, o.Page)...)
		}
		return problems
	}
	if o.Stream {
		return []string{"want a unary answer, got a stream"}
	}
	if len(e.Items) > 0 || e.ItemCount != nil {
		problems = append(problems, "expect.items needs a streaming capability")
	}
	if sch != nil {
		if msg := validationMessage(sch, o.Response); msg != "" {
			problems = append(problems, "the response does not validate against the output schema: "+msg)
		}
	}
	if len(e.Response) > 0 {
		problems = append(problems, matchRaw("response", e.Response, o.Response)...)
	}
	if len(e.RawData) > 0 {
		problems = append(problems, matchRaw("raw_data", e.RawData, o.RawData)...)
	}
	if len(e.Page) > 0 {
		problems = append(problems, matchRaw("page", e.Page, o.Page)...)
	}
	return problems
}

// matchRaw matches got against the wanted fields (see matchSubset).
func matchRaw(path string, want, got json.RawMessage) []string {
	w, err := decodeNumbers(want)
	if err != nil {
		return []string{path + ": the fixture's value is not JSON"}
	}
	if len(got) == 0 {
		got = json.RawMessage("null")
	}
	g, err := decodeNumbers(got)
	if err != nil {
		return []string{path + ": the answer is not JSON"}
	}
	if ok, why := matchSubset(path, w, g); !ok {
		return []string{why}
	}
	return nil
}

// checkStreaming calls every streaming capability, directly and through
// the host, and checks that each stream ends with a final page or error.
func (s *session) checkStreaming() Result {
	var streaming []wire.Capability
	for _, c := range s.desc.Capabilities {
		if c.Streaming {
			streaming = append(streaming, c)
		}
	}
	if len(streaming) == 0 {
		return skip("the plugin has no streaming capability")
	}
	var problems, called, notCalled []string
	for _, c := range streaming {
		var settings, auth json.RawMessage
		request := json.RawMessage(`{}`)
		if f := s.fixtureFor(c.Name, isSuccessCase); f != nil {
			request, settings, auth = f.Request, f.Settings, f.Auth
		} else if f := s.contextFixture(c.Name); f != nil {
			settings, auth = f.Settings, f.Auth
		}
		if sch := s.reqSchemas[c.Name]; sch != nil && validationMessage(sch, request) != "" && s.fixtureFor(c.Name, isSuccessCase) == nil {
			notCalled = append(notCalled, c.Name+" (no fixture case, and {} is not a valid request)")
			continue
		}
		called = append(called, c.Name)
		where := "stream " + c.Name
		_, chunks, err := s.wireInvoke(&wire.Call{Capability: c.Name, Request: request, Settings: settings, Auth: auth}, true, where+" (direct)")
		items := 0
		for _, ch := range chunks {
			items += len(ch.Lines())
		}
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			problems = append(problems, fmt.Sprintf("%s: the plugin ended the stream after %d items without a final page or error", c.Name, items))
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: the stream broke after %d items: %v", c.Name, items, err))
		case len(chunks) == 0 || !chunks[len(chunks)-1].End():
			problems = append(problems, fmt.Sprintf("%s: the stream has no final chunk", c.Name))
		}
		o := s.call(s.ctx, c.Name, envelopeOf(request, settings, auth), "", where+" (HTTP)")
		switch {
		case o.Transport != nil || o.Malformed != "":
			problems = append(problems, fmt.Sprintf("%s via HTTP: %s", c.Name, o.summary()))
		case !o.Stream && o.Err == nil:
			problems = append(problems, fmt.Sprintf("%s via HTTP: a streaming capability answered a unary envelope", c.Name))
		case o.Stream && o.Final == "":
			problems = append(problems, fmt.Sprintf("%s via HTTP: the NDJSON stream has no final {\"page\":...} or {\"error\":...} line", c.Name))
		case o.Stream && o.Err != nil && o.Err.RaisedBy == "host" && o.Err.code() == "connection_closed":
			problems = append(problems, fmt.Sprintf("%s via HTTP: the host had to end the stream (%s)", c.Name, cut(o.Err.Message, 200)))
		}
		if sch := s.respSchemas[c.Name]; sch != nil {
			for i, it := range o.Items {
				if msg := validationMessage(sch, it); msg != "" {
					problems = append(problems, fmt.Sprintf("%s via HTTP: item %d does not validate against the item schema: %s", c.Name, i, msg))
					break
				}
			}
		}
	}
	if len(problems) > 0 {
		return failWith("problems", problems)
	}
	if len(called) == 0 {
		return skip("no streaming capability could be called: %s", strings.Join(notCalled, "; "))
	}
	r := pass("%s end with a final page or error line: %s", plural(len(called), "streaming capability"), strings.Join(called, ", "))
	for _, n := range notCalled {
		r.Details = append(r.Details, "not called: "+n)
	}
	return r
}

// concurrentCase is a call the concurrency check repeats, with the answer
// it gave when made alone.
type concurrentCase struct {
	name       string
	capability string
	envelope   []byte
	want       *Fixture // nil for a probe
	baseline   *outcome
}

// concurrencyCases picks the calls to repeat: the fixture cases that can
// be repeated, or else the bad_request probes.
func (s *session) concurrencyCases() []concurrentCase {
	var out []concurrentCase
	for _, f := range s.fixtures {
		if f.Slow || f.Once {
			continue
		}
		s.mu.Lock()
		b := s.baselines[f.Name]
		s.mu.Unlock()
		if b == nil || b.Transport != nil || b.Malformed != "" {
			continue
		}
		out = append(out, concurrentCase{name: "fixture " + f.Name, capability: f.Capability, envelope: f.envelopeJSON(), want: f, baseline: b})
	}
	if len(out) > 0 {
		return out
	}
	s.mu.Lock()
	probes := append([]badProbe(nil), s.probes...)
	s.mu.Unlock()
	for i, p := range probes {
		out = append(out, concurrentCase{name: fmt.Sprintf("bad_request probe %d of %s", i+1, p.Capability), capability: p.Capability, envelope: p.Envelope,
			baseline: &outcome{Err: &errorInfo{ErrorCode: s.appID + ".bad_request"}}})
	}
	return out
}

// sameAnswer compares a concurrent answer with the case's answer alone:
// the same error code, or a success with the same values in the fields
// the fixture names (and the same number of items for a stream).
func sameAnswer(c concurrentCase, o *outcome) string {
	b := c.baseline
	switch {
	case o.Transport != nil || o.Malformed != "":
		return o.summary()
	case b.Err != nil:
		if o.Err == nil || o.Err.ErrorCode != b.Err.ErrorCode {
			return fmt.Sprintf("alone it answered error %s; now %s", b.Err.ErrorCode, o.summary())
		}
		return ""
	case o.Err != nil:
		return "alone it succeeded; now " + o.summary()
	case b.Stream:
		if !o.Stream || len(o.Items) != len(b.Items) || o.Final != b.Final {
			return fmt.Sprintf("alone it streamed %d items; now %s", len(b.Items), o.summary())
		}
		return ""
	}
	if c.want != nil && len(c.want.Expect.Response) > 0 {
		w, err1 := decodeNumbers(c.want.Expect.Response)
		bv, err2 := decodeNumbers(b.Response)
		ov, err3 := decodeNumbers(o.Response)
		if err1 == nil && err2 == nil && err3 == nil && !reflect.DeepEqual(valuesAt(w, bv), valuesAt(w, ov)) {
			return fmt.Sprintf("alone it answered %s; now %s", cut(string(b.Response), 120), cut(string(o.Response), 120))
		}
	}
	return ""
}

// checkConcurrency makes ConcurrentCalls calls at once and expects each to
// answer as it did alone.
func (s *session) checkConcurrency() Result {
	cases := s.concurrencyCases()
	if len(cases) == 0 {
		return skip("nothing to repeat: no fixture case without \"once\" or \"slow\", and no bad_request probe")
	}
	start := make(chan struct{})
	results := make([]*outcome, ConcurrentCalls)
	var wg sync.WaitGroup
	for i := range ConcurrentCalls {
		c := cases[i%len(cases)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = s.call(s.ctx, c.capability, c.envelope, "", "concurrent "+c.name)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(t0)
	var problems []string
	for i, o := range results {
		c := cases[i%len(cases)]
		if why := sameAnswer(c, o); why != "" {
			problems = append(problems, fmt.Sprintf("call %d (%s): %s", i+1, c.name, why))
		}
	}
	if len(problems) > 0 {
		return failWith(fmt.Sprintf("of %d concurrent calls answered differently than alone", ConcurrentCalls), problems)
	}
	what := plural(len(cases), "fixture case")
	if cases[0].want == nil {
		what = plural(len(cases), "bad_request probe") + ", as no fixture case is repeatable"
	}
	return pass("%d concurrent calls (%s) answered as they did alone, in %v", ConcurrentCalls, what, took.Round(time.Millisecond))
}

// checkCancellation starts a slow case, cancels it, and expects the plugin
// to end the call within CancelWithin and to go on serving.
func (s *session) checkCancellation() Result {
	var slow *Fixture
	for _, f := range s.fixtures {
		if f.Slow {
			slow = f
			break
		}
	}
	if slow == nil {
		return skip("no fixture case is marked \"slow\" (a call that runs for seconds unless cancelled), so cancellation cannot be tested; see docs/conformance.md")
	}
	reqID := newID("conformance-cancel-")
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	done := make(chan *outcome, 1)
	go func() { done <- s.call(ctx, slow.Capability, slow.envelopeJSON(), reqID, "slow fixture "+slow.Name) }()
	tagged := func(after time.Time) func(record) bool {
		return func(r record) bool {
			if !strings.HasSuffix(r.Module, "."+s.base) || r.At.Before(after) {
				return false
			}
			return toPluginLine(r).Fields["request_id"] == reqID
		}
	}
	// Give the handler time to start: until it logs something for the
	// call, at most 500 ms.
	_, started := s.logs.waitFor(500*time.Millisecond, tagged(time.Time{}))
	select {
	case o := <-done:
		return Result{Status: Fail, Reason: fmt.Sprintf("the slow case %s finished before it was cancelled (%v): %s; a slow case must run for several seconds", slow.Name, o.Took.Round(time.Millisecond), o.summary())}
	default:
	}
	cancelled := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(CancelWithin):
		return Result{Status: Fail, Reason: "the host did not end the cancelled call within 1 s"}
	}
	line, ok := s.logs.waitFor(time.Until(cancelled.Add(CancelWithin)), tagged(cancelled))
	if !ok {
		r := Result{Status: Fail, Reason: fmt.Sprintf("no sign within %v that the plugin ended the cancelled call %s: it logged nothing for request_id %s after the cancellation (a handler must return when its context is cancelled, and should log through req.Logger() when it stops early)", CancelWithin, slow.Name, reqID)}
		if !started {
			r.Details = []string{"the plugin logged nothing for the call before the cancellation either (500 ms after it was sent)"}
		}
		return r
	}
	after := line.At.Sub(cancelled)
	if msg := s.stillServes(); msg != "" {
		return Result{Status: Fail, Reason: "after the cancellation: " + msg}
	}
	return pass("the plugin ended the cancelled call %s %v after cancellation (logged %q) and goes on serving", slow.Name, after.Round(100*time.Microsecond), cut(toPluginLine(line).Message, 60))
}

// stillServes makes one call whose answer is known and returns "" when it
// comes back as expected.
func (s *session) stillServes() string {
	if cases := s.concurrencyCases(); len(cases) > 0 {
		c := cases[0]
		o := s.call(s.ctx, c.capability, c.envelope, "", "probe "+c.name)
		if why := sameAnswer(c, o); why != "" {
			return fmt.Sprintf("%s answered differently: %s", c.name, why)
		}
		return ""
	}
	res, _, err := s.wireInvoke(&wire.Call{Capability: unknownCapability, Request: json.RawMessage(`{}`)}, false, "probe: unknown capability")
	switch {
	case err != nil:
		return "a direct call failed: " + err.Error()
	case res.Err == nil || res.Err.Code != "not_implemented":
		return "a direct call to an unknown capability did not answer not_implemented"
	}
	return ""
}

// plural writes n and a noun, in the plural when n is not 1
// ("capability" → "capabilities").
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
