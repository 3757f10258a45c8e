package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// rootLogger is the name of the host logger the suite runs with; the
// supervisor of a plugin logs as rootLogger.<app_id>, and go-plugin
// re-logs each line of the plugin's stderr as
// rootLogger.<app_id>.<binary file name>.
const rootLogger = "conformance"

// record is one log line of the host under test.
type record struct {
	Module  string // the logger's name, e.g. conformance.reference.connector-reference
	Level   string
	Message string
	Fields  map[string]any
	At      time.Time // when the suite received it
}

// logCapture receives the host's log lines (including every line of the
// plugin's stderr, which go-plugin re-logs) as an hclog sink, and lets
// checks wait for one.
type logCapture struct {
	mu      sync.Mutex
	records []record
	changed chan struct{} // closed and replaced on every new record
}

func newLogCapture() *logCapture { return &logCapture{changed: make(chan struct{})} }

// logger returns an hclog logger whose every line (at any level, so that
// go-plugin passes on every plugin line) reaches the capture.
func (c *logCapture) logger() hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   rootLogger,
		Level:  hclog.Trace,
		Output: io.Discard,
	})
	l.RegisterSink(c)
	return l
}

// Accept implements hclog.SinkAdapter.
func (c *logCapture) Accept(name string, level hclog.Level, msg string, args ...any) {
	r := record{Module: name, Level: level.String(), Message: msg, Fields: map[string]any{}, At: time.Now()}
	for i := 0; i+1 < len(args); i += 2 {
		r.Fields[fmt.Sprint(args[i])] = args[i+1]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, r)
	close(c.changed)
	c.changed = make(chan struct{})
}

// snapshot returns the records so far and a channel closed on the next one.
func (c *logCapture) snapshot() ([]record, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record(nil), c.records...), c.changed
}

// waitFor waits until a record satisfies match, or timeout. It returns the
// record and whether one was found.
func (c *logCapture) waitFor(timeout time.Duration, match func(record) bool) (record, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		recs, changed := c.snapshot()
		for _, r := range recs[seen:] {
			if match(r) {
				return r, true
			}
		}
		seen = len(recs)
		select {
		case <-changed:
		case <-deadline.C:
			return record{}, false
		}
	}
}

// pluginLine is one line the plugin wrote on stderr, reconstructed from
// go-plugin's re-logging of it.
type pluginLine struct {
	// JSON is true when the line was hclog JSON.
	JSON    bool
	Level   string
	Message string
	Fields  map[string]any
	// Text is the line as written, for a line that was not JSON; for a
	// JSON line, the message and fields in a readable form.
	Text string
	// Unparsed is set for a line that looks like hclog JSON but that the
	// host (go-plugin) could not parse as such, e.g. for its timestamp
	// layout: the host re-logs it as plain text at debug level.
	Unparsed bool
	At       time.Time
}

// hclogLevels are the @level values of hclog JSON.
var hclogLevels = map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true}

// pluginLines returns the stderr lines of the plugin binary named base (the
// file name go-plugin tags them with).
func (c *logCapture) pluginLines(base string) []pluginLine {
	recs, _ := c.snapshot()
	suffix := "." + base
	var out []pluginLine
	for _, r := range recs {
		if !strings.HasSuffix(r.Module, suffix) {
			continue
		}
		out = append(out, toPluginLine(r))
	}
	return out
}

// toPluginLine undoes go-plugin's re-logging: a JSON line it parsed comes
// with its fields plus a "timestamp"; any other line comes as the message
// alone. A line go-plugin could not parse but that is hclog-shaped JSON
// (e.g. with another timestamp layout) keeps its fields and is marked
// Unparsed.
func toPluginLine(r record) pluginLine {
	if _, ok := r.Fields["timestamp"]; ok {
		fields := map[string]any{}
		for k, v := range r.Fields {
			if k != "timestamp" && !strings.HasPrefix(k, "@") {
				fields[k] = v
			}
		}
		pl := pluginLine{JSON: true, Level: r.Level, Message: r.Message, Fields: fields, At: r.At}
		pl.Text = pl.readable()
		return pl
	}
	pl := pluginLine{Message: r.Message, Text: r.Message, At: r.At}
	var m map[string]any
	if json.Unmarshal([]byte(strings.TrimSpace(r.Message)), &m) == nil {
		lvl, _ := m["@level"].(string)
		msg, isStr := m["@message"].(string)
		if hclogLevels[lvl] && isStr {
			pl.JSON, pl.Unparsed, pl.Level, pl.Message = true, true, lvl, msg
			pl.Fields = map[string]any{}
			for k, v := range m {
				if !strings.HasPrefix(k, "@") {
					pl.Fields[k] = v
				}
			}
		}
	}
	return pl
}

func (p pluginLine) readable() string {
	keys := make([]string, 0, len(p.Fields))
	for k := range p.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(p.Message)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, p.Fields[k])
	}
	return b.String()
}

// contains reports whether s occurs anywhere in the line: message, field
// names or values (at any depth).
func (p pluginLine) contains(s string) bool {
	if strings.Contains(p.Message, s) || strings.Contains(p.Text, s) {
		return true
	}
	for k, v := range p.Fields {
		if strings.Contains(k, s) || valueContains(v, s) {
			return true
		}
	}
	return false
}

func valueContains(v any, s string) bool {
	switch t := v.(type) {
	case string:
		return strings.Contains(t, s)
	case map[string]any:
		for k, x := range t {
			if strings.Contains(k, s) || valueContains(x, s) {
				return true
			}
		}
	case []any:
		for _, x := range t {
			if valueContains(x, s) {
				return true
			}
		}
	case nil:
		return false
	default:
		return strings.Contains(fmt.Sprint(t), s)
	}
	return false
}
