package conformance

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/connector-host/connector-host/host/supervisor"
)

// canaryAuth returns an auth object of kind whose secret fields hold new
// canaries (and whose other string fields a plain value), or nil when the
// kind has no secret field.
func (s *session) canaryAuth(kind string) (json.RawMessage, []string) {
	raw := s.authSchemas[kind]
	secrets := secretProperties(raw)
	if len(secrets) == 0 {
		return nil, nil
	}
	var doc map[string]any
	_ = json.Unmarshal(raw, &doc)
	props, _ := doc["properties"].(map[string]any)
	obj := map[string]any{}
	var fed []string
	for name, p := range props {
		pm, _ := p.(map[string]any)
		switch {
		case markedSecret(pm):
			c := s.newCanary()
			obj[name] = c
			fed = append(fed, "auth."+kind+"."+name)
		case pm != nil && pm["type"] == "string":
			obj[name] = "conformance-" + name
		}
	}
	b, _ := json.Marshal(map[string]any{kind: obj})
	return b, fed
}

func (s *session) newCanary() string {
	c := newID("cnry")
	s.canaries = append(s.canaries, c)
	return c
}

// withCanaries returns a copy of an auth object with every secret field it
// has replaced by a canary.
func (s *session) authWithCanaries(auth json.RawMessage) (json.RawMessage, []string) {
	var doc map[string]map[string]any
	if json.Unmarshal(auth, &doc) != nil || len(doc) == 0 {
		return auth, nil
	}
	var fed []string
	for kind, obj := range doc {
		for _, name := range secretProperties(s.authSchemas[kind]) {
			if _, ok := obj[name].(string); ok {
				obj[name] = s.newCanary()
				fed = append(fed, "auth."+kind+"."+name)
			}
		}
	}
	b, _ := json.Marshal(doc)
	return b, fed
}

// settingsWithCanaries returns settings with secret settings replaced by
// canaries: those present, or all of them when add is set.
func (s *session) settingsWithCanaries(settings json.RawMessage, add bool) (json.RawMessage, []string) {
	if s.desc == nil {
		return settings, nil
	}
	names := secretProperties(s.desc.SettingsSchema)
	if len(names) == 0 {
		return settings, nil
	}
	doc := map[string]any{}
	if len(settings) > 0 && string(settings) != "null" {
		if json.Unmarshal(settings, &doc) != nil {
			return settings, nil
		}
	}
	var fed []string
	for _, n := range names {
		if _, present := doc[n]; present || add {
			doc[n] = s.newCanary()
			fed = append(fed, "settings."+n)
		}
	}
	b, _ := json.Marshal(doc)
	return b, fed
}

// feedCanaries makes calls whose credentials, secret settings and secret
// request fields are canaries: the repeatable fixture cases (their own
// secrets replaced), for each capability whose request schema has x-secret
// fields no such case carries a request built from its best fixture case
// with every secret field a canary, and one bad_request probe per
// capability (with canary credentials of each accepted kind in turn). The
// secrets check later looks for the canaries in everything the plugin
// logged and answered.
func (s *session) feedCanaries() {
	fedAt := map[string]bool{}
	note := func(fed []string) {
		for _, f := range fed {
			fedAt[f] = true
		}
	}
	send := func(capability string, env []byte, where string) {
		o := s.call(s.ctx, capability, env, "", where)
		s.canaryCalls++
		if o.Err != nil {
			s.canaryAnswers = append(s.canaryAnswers, o.Err.Message)
		}
		if text := s.maskedAnswer(capability, o); text != "" {
			s.canaryReplies = append(s.canaryReplies, canaryReply{Where: where, Text: text})
		}
	}
	// Request fields planted per capability, to add the missing ones.
	plantedReq := map[string]map[string]bool{}
	for _, f := range s.fixtures {
		if f.Slow || f.Once {
			continue
		}
		auth, fa := s.authWithCanaries(f.Auth)
		settings, fs := s.settingsWithCanaries(f.Settings, false)
		request, fr := s.requestWithCanaries(f.Capability, f.Request, false)
		if len(fa)+len(fs)+len(fr) == 0 {
			continue
		}
		note(fa)
		note(fs)
		for _, p := range fr {
			fedAt[f.Capability+" "+p] = true
			if plantedReq[f.Capability] == nil {
				plantedReq[f.Capability] = map[string]bool{}
			}
			plantedReq[f.Capability][p] = true
		}
		send(f.Capability, envelopeOfFixture(f, request, settings, auth), "canary fixture "+f.Name)
	}
	for _, c := range s.desc.Capabilities {
		missing := false
		for _, p := range s.requestSecretPaths(c.Name) {
			missing = missing || !plantedReq[c.Name][p]
		}
		if !missing {
			continue
		}
		f := s.requestBase(c.Name)
		if f == nil {
			s.canaryUnfed = append(s.canaryUnfed, c.Name)
			continue
		}
		request, fr := s.requestWithCanaries(c.Name, f.Request, true)
		auth, fa := s.authWithCanaries(f.Auth)
		settings, fs := s.settingsWithCanaries(f.Settings, false)
		note(fa)
		note(fs)
		for _, p := range fr {
			fedAt[c.Name+" "+p] = true
		}
		send(c.Name, envelopeOfFixture(f, request, settings, auth), "canary request of "+c.Name+" built from fixture "+f.Name)
		s.canaryBuilt = append(s.canaryBuilt, fmt.Sprintf("%s: %s planted in the request of fixture %s", c.Name, strings.Join(fr, ", "), f.Name))
	}
	var kinds []string
	for k := range s.authSchemas {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	i := 0
	for _, c := range s.desc.Capabilities {
		sch := s.reqSchemas[c.Name]
		if sch == nil {
			continue
		}
		settings, _, base, _ := s.probeContext(c.Name)
		probes := badRequestProbes(sch, c.RequestSchema, base)
		if len(probes) == 0 {
			continue
		}
		var auth json.RawMessage
		var fa []string
		for try := 0; try < len(kinds) && auth == nil; try++ {
			auth, fa = s.canaryAuth(kinds[(i+try)%len(kinds)])
		}
		i++
		settings, fs := s.settingsWithCanaries(settings, true)
		if len(fa)+len(fs) == 0 {
			continue
		}
		note(fa)
		note(fs)
		send(c.Name, envelopeOf(probes[0].Request, settings, auth), "canary probe "+c.Name)
	}
	for f := range fedAt {
		s.canaryFed = append(s.canaryFed, f)
	}
	sort.Strings(s.canaryFed)
}

// requestBase is the fixture case a canary request of capability is built
// from, among its repeatable cases (not slow, not once): the first in this
// order that takes a canary in every x-secret request field — a case that
// expects success, one whose expected error is neither about auth or
// settings nor bad_request (its request reaches the handler), one whose
// error is bad_request, any other — else the one that takes the most; nil
// when the capability has no repeatable case.
func (s *session) requestBase(capability string) *Fixture {
	neutral := func(f *Fixture) bool { return s.isNeutralErrorCase(f) && f.expectedCode() != "bad_request" }
	ranks := []func(*Fixture) bool{isSuccessCase, neutral, s.isNeutralErrorCase, func(*Fixture) bool { return true }}
	want := len(s.requestSecretPaths(capability))
	var best *Fixture
	bestN := -1
	seen := map[*Fixture]bool{}
	for _, ok := range ranks {
		for _, f := range s.fixtures {
			if f.Capability != capability || f.Slow || f.Once || seen[f] || !ok(f) {
				continue
			}
			seen[f] = true
			n := len(s.plantablePaths(capability, f.Request))
			if n >= want {
				return f
			}
			if n > bestN {
				best, bestN = f, n
			}
		}
	}
	return best
}

// plantablePaths are the x-secret request fields a canary request built
// from request would carry.
func (s *session) plantablePaths(capability string, request json.RawMessage) []string {
	capa, ok := s.capability(capability)
	if !ok {
		return nil
	}
	w := newSchemaWalker(capa.RequestSchema)
	var doc any = map[string]any{}
	if w == nil || (len(request) > 0 && json.Unmarshal(request, &doc) != nil) {
		return nil
	}
	fed := map[string]bool{}
	w.plant(w.root, doc, "request", true, func() string { return "" }, fed, 0)
	return sortedKeys(fed)
}

// envelopeOfFixture is a fixture's request envelope with its request,
// settings and auth replaced.
func envelopeOfFixture(f *Fixture, request, settings, auth json.RawMessage) []byte {
	g := *f
	g.Request, g.Settings, g.Auth = request, settings, auth
	return g.envelopeJSON()
}

// canaryReply is what a canary call answered, as text with the declared
// secret outputs masked.
type canaryReply struct {
	Where string
	Text  string
}

// checkSecrets looks for the canaries in the plugin's log lines and in
// everything answered to the canary calls (responses, stream items, error
// messages). It runs after the plugin was stopped, so every line it wrote
// has been read.
func (s *session) checkSecrets() Result {
	if s.canaryCalls == 0 {
		reason := "nothing to feed a canary secret into: the plugin accepts no credential kind with a secret field, has no secret settings and no request field marked x-secret (or no call could carry one)"
		if len(s.canaryUnfed) > 0 {
			reason += "; the x-secret request fields of " + strings.Join(s.canaryUnfed, ", ") + " could not be fed: no repeatable fixture case to build a request from"
		}
		return skip("%s", reason)
	}
	var problems []string
	lines := s.logs.pluginLines(s.base)
	mask := func(text string) string {
		for _, c := range s.canaries {
			text = strings.ReplaceAll(text, c, "<CANARY>")
		}
		return cut(text, 300)
	}
	for _, c := range s.canaries {
		for _, l := range lines {
			if l.contains(c) {
				problems = append(problems, fmt.Sprintf("a canary secret appears in a log line: %s", mask(l.Text)))
				break
			}
		}
		for _, r := range s.canaryReplies {
			if strings.Contains(r.Text, c) {
				problems = append(problems, fmt.Sprintf("a canary secret appears in the answer to the %s: %s", r.Where, mask(r.Text)))
				break
			}
		}
	}
	if len(problems) > 0 {
		return failWith("leaks", problems)
	}
	r := pass("%d canary secrets fed in %d calls (%s) appear in none of %d log lines, %d answers and %d error messages",
		len(s.canaries), s.canaryCalls, strings.Join(s.canaryFed, ", "), len(lines), len(s.canaryReplies), len(s.canaryAnswers))
	for _, b := range s.canaryBuilt {
		r.Details = append(r.Details, "canary request "+b)
	}
	for _, c := range s.canaryUnfed {
		r.Details = append(r.Details, "not fed: the x-secret request fields of "+c+" (no repeatable fixture case to build a request from)")
	}
	return r
}

// hclogTimestamp is the @timestamp layout of hclog JSON, the only one
// go-plugin parses.
const hclogTimestamp = "2006-01-02T15:04:05.000000Z07:00"

// checkLogs checks that every line the plugin wrote on stderr is hclog
// JSON (the host parses them and re-logs them tagged with the app_id).
func (s *session) checkLogs() Result {
	lines := s.logs.pluginLines(s.base)
	var bad []string
	for _, l := range lines {
		switch {
		case !l.JSON:
			bad = append(bad, fmt.Sprintf("not hclog JSON: %q", cut(l.Text, 200)))
		case l.Unparsed:
			bad = append(bad, fmt.Sprintf("not hclog JSON: JSON the host cannot parse as an hclog line (@timestamp must have the layout %s; the host re-logs it as plain text at debug level): %q", hclogTimestamp, cut(l.Text, 200)))
		}
	}
	// Once go-plugin serves, it points os.Stdout and os.Stderr at pipes
	// it forwards to the host, which discards them: anything written there
	// (fmt.Fprintln(os.Stderr, ...), a logger created after Serve) is
	// lost. go-plugin's client reports each such write at trace level.
	writes := map[string][2]int{}
	recs, _ := s.logs.snapshot()
	for _, r := range recs {
		if strings.HasSuffix(r.Module, ".stdio") && r.Message == "received data" {
			ch := fmt.Sprint(r.Fields["channel"])
			n := 0
			if v, ok := r.Fields["len"].(int); ok {
				n = v
			}
			w := writes[ch]
			writes[ch] = [2]int{w[0] + 1, w[1] + n}
		}
	}
	for _, ch := range []string{"STDERR", "STDOUT"} {
		if w, ok := writes[ch]; ok {
			bad = append(bad, fmt.Sprintf("not hclog JSON: %d writes (%d bytes) to os.%s after go-plugin took over stdio, outside the logger; the host discards them",
				w[0], w[1], map[string]string{"STDERR": "Stderr", "STDOUT": "Stdout"}[ch]))
		}
	}
	if len(bad) > 0 {
		return failWith("problems with what the plugin wrote", bad)
	}
	if len(lines) == 0 {
		return pass("the plugin wrote nothing on stderr")
	}
	return pass("all %d stderr lines are hclog JSON", len(lines))
}

// checkRestart kills the plugin process with SIGKILL and expects the host
// to have it back, answering calls, within RestartWithin.
func (s *session) checkRestart() Result {
	inst, err := s.instance()
	if err != nil {
		return Result{Status: Fail, Reason: "no running plugin process to kill: " + err.Error()}
	}
	sup := s.sup()
	gen, pid := inst.Generation, inst.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return Result{Status: Fail, Reason: fmt.Sprintf("kill -9 %d: %v", pid, err)}
	}
	killed := time.Now()
	select {
	case <-inst.Exited():
	case <-time.After(2 * time.Second):
		return Result{Status: Fail, Reason: fmt.Sprintf("process %d did not die of SIGKILL within 2 s", pid)}
	}
	var back *supervisor.Instance
	ok := s.waitUntil(RestartWithin, func() bool {
		if cur := sup.Current(); cur != nil && cur.Generation > gen {
			back = cur
			return true
		}
		st, _, _ := sup.Status()
		return st == supervisor.Failed
	})
	if !ok || back == nil {
		st, _, lastErr := sup.Status()
		reason := fmt.Sprintf("the plugin did not come back within %v of kill -9 (state %s)", RestartWithin, st)
		if lastErr != nil {
			reason += ": " + lastErr.Error()
		}
		return Result{Status: Fail, Reason: reason}
	}
	tookBack := time.Since(killed)
	if d := back.Description; d == nil || d.AppID != s.desc.AppID || d.Version != s.desc.Version || len(d.Capabilities) != len(s.desc.Capabilities) {
		return Result{Status: Fail, Reason: "after the restart the plugin describes itself differently"}
	}
	if msg := s.stillServes(); msg != "" {
		return Result{Status: Fail, Reason: "back after kill -9, but " + msg}
	}
	return pass("back %v after kill -9 (process %d → generation %d) and answering calls", tookBack.Round(time.Millisecond), pid, back.Generation)
}

// checkShutdown stops the plugin twice: with SIGTERM (as a process
// manager would), then as the host does (go-plugin's graceful shutdown);
// each time the process must exit within ShutdownWithin. It leaves the
// host stopped, so that every log line has been read.
func (s *session) checkShutdown() Result {
	var problems, notes []string
	inst, err := s.instance()
	if err != nil {
		notes = append(notes, "no running process after the restart check; starting a new host")
		s.stopAll()
		if _, err := s.startHost(); err != nil {
			return Result{Status: Fail, Reason: "the plugin does not start again: " + err.Error()}
		}
		if inst, err = s.instance(); err != nil {
			return Result{Status: Fail, Reason: "the plugin does not start again: " + err.Error()}
		}
	}
	// 1. SIGTERM.
	pid := inst.PID()
	t0 := time.Now()
	termTook := time.Duration(0)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		problems = append(problems, fmt.Sprintf("SIGTERM to %d: %v", pid, err))
	} else {
		select {
		case <-inst.Exited():
			termTook = time.Since(t0)
		case <-time.After(ShutdownWithin):
			problems = append(problems, fmt.Sprintf("on SIGTERM the plugin did not exit within %v", ShutdownWithin))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// 2. The host stops it.
	sup := s.sup()
	var next *supervisor.Instance
	s.waitUntil(RestartWithin, func() bool {
		if cur := sup.Current(); cur != nil && cur.Generation > inst.Generation {
			next = cur
			return true
		}
		return false
	})
	if next == nil {
		notes = append(notes, "the plugin did not come back after SIGTERM; starting a new host for the stop")
		s.stopAll()
		if _, err := s.startHost(); err == nil {
			next, _ = s.instance()
		}
	}
	if next == nil {
		problems = append(problems, "no running process to stop")
		s.stopAll()
		return failWith("problems", problems)
	}
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.srv = nil
	}
	h := s.h
	s.h = nil
	closed := make(chan struct{})
	t1 := time.Now()
	go func() {
		h.Close()
		close(closed)
	}()
	stopTook := time.Duration(0)
	select {
	case <-next.Exited():
		stopTook = time.Since(t1)
	case <-time.After(ShutdownWithin):
		problems = append(problems, fmt.Sprintf("when the host stopped it, the plugin did not exit within %v (go-plugin killed it)", ShutdownWithin))
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		problems = append(problems, "the host did not finish stopping the plugin within 30 s")
	}
	if len(problems) > 0 {
		r := failWith("problems", problems)
		r.Details = append(r.Details, notes...)
		return r
	}
	r := pass("exited %v after SIGTERM and %v after the host's stop (limit %v)", termTook.Round(time.Millisecond), stopTook.Round(time.Millisecond), ShutdownWithin)
	r.Details = notes
	return r
}
