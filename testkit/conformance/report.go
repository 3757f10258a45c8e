package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	// Check is the check's name (see Checks).
	Check string
	// Status is PASS, FAIL or SKIP.
	Status Status
	// Reason says what was found (PASS), what is wrong (FAIL) or why the
	// check could not run (SKIP).
	Reason string
	// Details lists every problem of a FAIL, or notes.
	Details []string
	// Duration is how long the check took.
	Duration time.Duration
}

// Report is the outcome of a conformance run.
type Report struct {
	// Binary is the plugin binary checked.
	Binary string
	// AppID and Version are what the plugin described itself as (empty
	// when it did not start).
	AppID   string
	Version string
	// Fixtures is the fixture directory, and Cases the number of cases
	// loaded from it.
	Fixtures string
	Cases    int
	// Results holds one Result per check, in the order of Checks.
	Results []Result
	// Duration is the whole run's time.
	Duration time.Duration
	// PluginLog is the end of the plugin's stderr, for diagnosing a FAIL.
	PluginLog string
}

// Result returns the result of the named check, or nil.
func (r *Report) Result(check string) *Result {
	for i := range r.Results {
		if r.Results[i].Check == check {
			return &r.Results[i]
		}
	}
	return nil
}

func (r *Report) count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Passed counts the checks that passed.
func (r *Report) Passed() int { return r.count(Pass) }

// Failed counts the checks that failed.
func (r *Report) Failed() int { return r.count(Fail) }

// Skipped counts the checks that were skipped.
func (r *Report) Skipped() int { return r.count(Skip) }

// OK reports whether no check failed.
func (r *Report) OK() bool { return r.Failed() == 0 }

// WriteText prints the report for a person: one line per check with its
// status and reason (details indented below a FAIL or SKIP), then a
// summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	who := r.AppID
	if r.Version != "" {
		who += " " + r.Version
	}
	if who == "" {
		who = "did not start"
	}
	fmt.Fprintf(&b, "conformance of %s (%s)\n", r.Binary, who)
	if r.Fixtures != "" {
		fmt.Fprintf(&b, "fixtures: %s (%d cases)\n", r.Fixtures, r.Cases)
	} else {
		fmt.Fprintf(&b, "fixtures: none (generic checks only; see docs/conformance.md)\n")
	}
	width := 0
	for _, res := range r.Results {
		width = max(width, len(res.Check))
	}
	for _, res := range r.Results {
		fmt.Fprintf(&b, "%s  %-*s  %s\n", res.Status, width, res.Check, res.Reason)
		for _, d := range res.Details {
			fmt.Fprintf(&b, "      %s\n", d)
		}
	}
	fmt.Fprintf(&b, "%s: %d checks, %d PASS, %d FAIL, %d SKIP in %v\n", r.AppID, len(r.Results), r.Passed(), r.Failed(), r.Skipped(), r.Duration.Round(time.Millisecond))
	if r.Failed() > 0 && r.PluginLog != "" {
		fmt.Fprintf(&b, "plugin stderr (last lines):\n%s\n", indent(r.PluginLog, "  "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// jsonReport is the machine-readable report.
type jsonReport struct {
	Binary     string       `json:"binary"`
	AppID      string       `json:"app_id"`
	Version    string       `json:"version"`
	Fixtures   string       `json:"fixtures"`
	Cases      int          `json:"cases"`
	OK         bool         `json:"ok"`
	Summary    jsonSummary  `json:"summary"`
	DurationMS int64        `json:"duration_ms"`
	Checks     []jsonResult `json:"checks"`
}

type jsonSummary struct {
	Pass int `json:"pass"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

type jsonResult struct {
	Name       string   `json:"name"`
	Status     Status   `json:"status"`
	Reason     string   `json:"reason"`
	Details    []string `json:"details"`
	DurationMS int64    `json:"duration_ms"`
}

// MarshalJSON writes the machine-readable report (the format of
// connector-host conformance --json-report, see docs/conformance.md).
func (r *Report) MarshalJSON() ([]byte, error) {
	out := jsonReport{
		Binary: r.Binary, AppID: r.AppID, Version: r.Version, Fixtures: r.Fixtures, Cases: r.Cases,
		OK:         r.OK(),
		Summary:    jsonSummary{Pass: r.Passed(), Fail: r.Failed(), Skip: r.Skipped()},
		DurationMS: r.Duration.Milliseconds(),
		Checks:     []jsonResult{},
	}
	for _, res := range r.Results {
		d := res.Details
		if d == nil {
			d = []string{}
		}
		out.Checks = append(out.Checks, jsonResult{Name: res.Check, Status: res.Status, Reason: res.Reason, Details: d, DurationMS: res.Duration.Milliseconds()})
	}
	return json.Marshal(out)
}
