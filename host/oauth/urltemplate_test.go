package oauth

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

func TestParseTemplateRejects(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"ftp://example.com/token":              "must start with https://",
		"example.com/token":                    "must start with https://",
		"https://user:pw@example.com/token":    "userinfo",
		"https://{u}@example.com/token":        "userinfo",
		"https:///token":                       "no host",
		"http://example.com/token":             "only for loopback",
		"http://{sub}.example.com/token":       "only for loopback",
		"https://example.com/{bad-name}/token": "malformed placeholder",
		"https://example.com/{unclosed/token":  "malformed placeholder",
		"https://example.com:{port}x/token":    "is not a URL",
		"https://example.com/token#frag":       "fragment",
		"https://example.com:99999/token":      "port",
	}
	for tmpl, want := range cases {
		t.Run(tmpl, func(t *testing.T) {
			t.Parallel()
			_, err := ParseTemplate("oauth.token_url", tmpl)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want it to mention %q", err, want)
			}
			if !strings.HasPrefix(err.Error(), "oauth.token_url") {
				t.Fatalf("error does not name the field: %v", err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	cases := []struct {
		tmpl    string
		values  map[string]string
		want    string // resolved URL, or "" when an error containing errPart is expected
		errPart string
	}{
		{"https://{sub}.example.com/oauth/token", map[string]string{"sub": "acme"}, "https://acme.example.com/oauth/token", ""},
		{"https://{sub}.example.com/oauth/token", map[string]string{"sub": "ACME-eu1"}, "https://ACME-eu1.example.com/oauth/token", ""},
		{"https://api.example.com/{tenant}/token", map[string]string{"tenant": "t_1.x~y"}, "https://api.example.com/t_1.x~y/token", ""},
		{"https://example.com/token", nil, "https://example.com/token", ""},
		{"http://127.0.0.1:{port}/token", map[string]string{"port": "8080"}, "http://127.0.0.1:8080/token", ""},
		{"http://localhost:{port}/token", map[string]string{"port": "1"}, "http://localhost:1/token", ""},
		{"http://[::1]:{port}/token", map[string]string{"port": "443"}, "http://[::1]:443/token", ""},
		{"https://{sub}.example.com/token?x={sub}", map[string]string{"sub": "a"}, "https://a.example.com/token?x=a", ""},
		// A placeholder in the host is exactly one DNS label.
		{"https://{sub}.example.com/token", map[string]string{"sub": "evil.com.x"}, "", "does not match"},
		{"https://{sub}.example.com/token", map[string]string{"sub": "evil.com/"}, "", "settings.sub: may contain only"},
		{"https://{sub}.example.com/token", map[string]string{"sub": "evil.com?"}, "", "settings.sub: may contain only"},
		{"https://{sub}.example.com/token", map[string]string{"sub": "a@evil.com"}, "", "settings.sub: may contain only"},
		{"https://{sub}.example.com/token", map[string]string{"sub": "-bad"}, "", "does not match"},
		{"https://{sub}.example.com/token", map[string]string{"sub": "a%2fb"}, "", "may contain only"},
		{"https://{sub}.example.com/token", map[string]string{"sub": "a b"}, "", "may contain only"},
		{"https://{sub}.example.com/token", map[string]string{}, "", "settings.sub: required"},
		{"https://{sub}.example.com/token", map[string]string{"sub": ""}, "", "settings.sub: required"},
		{"https://api.example.com/{tenant}/token", map[string]string{"tenant": ".."}, "", "may contain only"},
		// A port placeholder takes digits only.
		{"http://127.0.0.1:{port}/token", map[string]string{"port": "80.evil.com"}, "", ""},
		{"http://127.0.0.1:{port}/token", map[string]string{"port": "123456"}, "", ""},
		// A host placeholder cannot turn https into a loopback exception.
		{"http://{h}/token", map[string]string{"h": "example"}, "", "loopback"},
	}
	for _, c := range cases {
		name := c.tmpl + " " + strings.Join(mapValues(c.values), ",")
		t.Run(name, func(t *testing.T) {
			tt, err := ParseTemplate("oauth.token_url", c.tmpl)
			if err != nil {
				if c.want == "" {
					return // refused at parse time: fine for the error cases
				}
				t.Fatal(err)
			}
			got, err := tt.Resolve(c.values)
			if c.want != "" {
				if err != nil || got != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("resolved to %q; want an error", got)
			}
			if c.errPart != "" && !strings.Contains(err.Error(), c.errPart) {
				t.Fatalf("err = %v, want %q", err, c.errPart)
			}
		})
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func TestCheckEndpoint(t *testing.T) {
	t.Parallel()
	ok := []string{"https://a.example/x", "http://127.0.0.1:9/x", "http://127.1.2.3/x", "http://localhost/x", "http://[::1]/x"}
	bad := []string{"http://example.com/x", "https://u:p@example.com/x", "https:///x", "javascript:alert(1)", "http://10.0.0.1/x", "https://a.example/x#f", "http://0.0.0.0/x"}
	for _, u := range ok {
		if err := CheckEndpoint(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range bad {
		if err := CheckEndpoint(u); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
	if err := CheckEndpoint("https://user:hunter22@example.com/"); err == nil || strings.Contains(err.Error(), "hunter22") {
		t.Errorf("userinfo error shows the password: %v", err)
	}
}

func TestSettingValues(t *testing.T) {
	t.Parallel()
	got, err := settingValues(json.RawMessage(`{"sub":"acme","port":8080,"other":{"x":1}}`), []string{"sub", "port", "missing"})
	if err != nil || got["sub"] != "acme" || got["port"] != "8080" || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{`{"sub":1.5}`, `{"sub":true}`, `{"sub":{"a":1}}`, `[1]`} {
		if _, err := settingValues(json.RawMessage(bad), []string{"sub"}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if got, err := settingValues(nil, []string{"sub"}); err != nil || len(got) != 0 {
		t.Fatalf("nil settings: %v %v", got, err)
	}
}

// FuzzResolve: whatever a request puts in the settings, a resolved URL
// has the template's scheme rules and host pattern.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"acme", "evil.com", "a/b", "a@b", "..", "%2f", "a b", "", "x:1", "[::1]", "é"} {
		f.Add("https://{sub}.example.com/{path}/token", s, "p")
		f.Add("http://127.0.0.1:{sub}/token", s, "p")
	}
	f.Fuzz(func(t *testing.T, tmpl, sub, path string) {
		tt, err := ParseTemplate("oauth.token_url", tmpl)
		if err != nil {
			return
		}
		got, err := tt.Resolve(map[string]string{"sub": sub, "path": path})
		if err != nil {
			return
		}
		u, perr := url.Parse(got)
		if perr != nil {
			t.Fatalf("resolved %q does not parse: %v", got, perr)
		}
		if u.User != nil {
			t.Fatalf("resolved %q has userinfo", got)
		}
		if err := CheckEndpoint(got); err != nil {
			t.Fatalf("resolved %q fails the endpoint check: %v", got, err)
		}
		if !tt.host.MatchString(strings.ToLower(u.Host)) {
			t.Fatalf("resolved %q escapes the host pattern", got)
		}
		if strings.Contains(tmpl, "example.com") && !strings.Contains(tmpl, "{") && got != tmpl {
			t.Fatalf("a fixed template changed: %q → %q", tmpl, got)
		}
	})
}
