package oauth

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// A connector's authorization and token URLs may be templates whose {name}
// placeholders are filled from the request's settings (e.g.
// https://{subdomain}.example.com/oauth/token). A filled-in URL is checked
// before any request is sent, so that a request cannot point the host at
// an arbitrary server:
//   - the scheme is https; http only when the host is loopback;
//   - there is no userinfo (user:pass@);
//   - the host matches the template's host pattern: a placeholder in the
//     host stands for exactly one DNS label, one in the port for digits;
//   - placeholder values are made of letters, digits and . _ ~ - only.

var placeholderRE = regexp.MustCompile(`\{([a-zA-Z_][a-zA-Z0-9_]*)\}`)

// valueRE is what a placeholder value may contain (RFC 3986 unreserved).
var valueRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,253}$`)

// labelPattern is one DNS label; portPattern a port number.
const (
	labelPattern = `[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?`
	portPattern  = `[0-9]{1,5}`
)

// Template is a parsed URL template.
type Template struct {
	field string
	raw   string
	names []string
	host  *regexp.Regexp // matches the lower-cased host[:port]
}

// ParseTemplate parses a URL template. field names it in errors (e.g.
// "oauth.token_url").
func ParseTemplate(field, raw string) (*Template, error) {
	t := &Template{field: field, raw: raw}
	lower := strings.ToLower(raw)
	var rest string
	switch {
	case strings.HasPrefix(lower, "https://"):
		rest = raw[len("https://"):]
	case strings.HasPrefix(lower, "http://"):
		rest = raw[len("http://"):]
	default:
		return nil, fmt.Errorf("%s: %q must start with https:// (or http:// for loopback)", field, raw)
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if strings.Contains(authority, "@") {
		return nil, fmt.Errorf("%s: %q must not contain userinfo (user@)", field, raw)
	}
	if authority == "" {
		return nil, fmt.Errorf("%s: %q has no host", field, raw)
	}
	host, port := splitAuthority(authority)
	hostRE, err := patternOf(host, labelPattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %q: %w", field, raw, err)
	}
	pattern := hostRE
	if port != "" {
		portRE, err := patternOf(port, portPattern)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", field, raw, err)
		}
		pattern += ":" + portRE
	}
	t.host = regexp.MustCompile("^" + pattern + "$")
	seen := map[string]bool{}
	for _, m := range placeholderRE.FindAllStringSubmatch(raw, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			t.names = append(t.names, m[1])
		}
	}
	if strings.ContainsAny(placeholderRE.ReplaceAllString(raw, ""), "{}") {
		return nil, fmt.Errorf("%s: %q has a malformed placeholder (use {name})", field, raw)
	}
	// The template filled with sample values must itself be acceptable.
	sample := map[string]string{}
	for _, n := range t.names {
		sample[n] = "1"
	}
	if _, err := t.Resolve(sample); err != nil {
		return nil, err
	}
	return t, nil
}

// splitAuthority splits host[:port], keeping an IPv6 literal whole.
func splitAuthority(a string) (host, port string) {
	if strings.HasPrefix(a, "[") {
		if i := strings.LastIndex(a, "]"); i >= 0 {
			host, rest := a[:i+1], a[i+1:]
			return host, strings.TrimPrefix(rest, ":")
		}
		return a, ""
	}
	if i := strings.LastIndex(a, ":"); i >= 0 {
		return a[:i], a[i+1:]
	}
	return a, ""
}

// patternOf turns a template piece into a regexp: literal text quoted
// (lower-cased), each placeholder replaced by sub.
func patternOf(piece, sub string) (string, error) {
	var b strings.Builder
	last := 0
	for _, loc := range placeholderRE.FindAllStringIndex(piece, -1) {
		b.WriteString(regexp.QuoteMeta(strings.ToLower(piece[last:loc[0]])))
		b.WriteString(sub)
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(strings.ToLower(piece[last:])))
	out := b.String()
	if out == "" {
		return "", fmt.Errorf("empty host or port")
	}
	return out, nil
}

// Names returns the placeholder names, in order of first appearance.
func (t *Template) Names() []string { return append([]string(nil), t.names...) }

// String returns the template text.
func (t *Template) String() string { return t.raw }

// Resolve fills the placeholders and checks the result (scheme, userinfo,
// host pattern). values must hold every placeholder.
func (t *Template) Resolve(values map[string]string) (string, error) {
	var missing, bad []string
	filled := placeholderRE.ReplaceAllStringFunc(t.raw, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := values[name]
		if !ok || v == "" {
			missing = append(missing, name)
			return m
		}
		if !valueRE.MatchString(v) || strings.Contains(v, "..") {
			bad = append(bad, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("settings.%s: required by %s (%s)", missing[0], t.field, t.raw)
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("settings.%s: may contain only letters, digits and . _ ~ - (it is filled into %s)", bad[0], t.field)
	}
	if err := CheckEndpoint(filled); err != nil {
		return "", fmt.Errorf("%s: %w", t.field, err)
	}
	u, _ := url.Parse(filled)
	if !t.host.MatchString(strings.ToLower(u.Host)) {
		return "", fmt.Errorf("%s: host %q does not match the declared %s", t.field, u.Host, t.raw)
	}
	return filled, nil
}

// CheckEndpoint checks an absolute URL the host is about to call: https
// (http only for a loopback host), no userinfo, no fragment.
func CheckEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not contain userinfo", redactUser(u))
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%q must not have a fragment", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not a port number", raw, p)
		}
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return fmt.Errorf("%q: plain http is allowed only for loopback hosts; use https", raw)
		}
	default:
		return fmt.Errorf("%q: scheme must be https", raw)
	}
	return nil
}

func redactUser(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// IsLoopback reports whether host names this machine: localhost, or an
// address in 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// settingValues extracts the template values from a settings object:
// top-level strings and integers, by name.
func settingValues(settings json.RawMessage, names []string) (map[string]string, error) {
	out := map[string]string{}
	if len(names) == 0 {
		return out, nil
	}
	var m map[string]json.RawMessage
	if len(settings) > 0 && string(settings) != "null" {
		if err := json.Unmarshal(settings, &m); err != nil {
			return nil, fmt.Errorf("settings: must be a JSON object")
		}
	}
	for _, n := range names {
		raw, ok := m[n]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[n] = s
			continue
		}
		var num json.Number
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if dec.Decode(&num) == nil {
			if _, err := num.Int64(); err == nil {
				out[n] = num.String()
				continue
			}
		}
		return nil, fmt.Errorf("settings.%s: must be a string or an integer (it is filled into an OAuth URL)", n)
	}
	return out, nil
}
