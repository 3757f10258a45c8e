package config

import (
	"strings"
	"testing"
)

func TestParseEnvReferences(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TOKEN":   "p\"a:ss\nword: x\n  listen: 0.0.0.0:1",
		"NULLISH": "null",
		"N":       "7",
		"BYTES":   "2048",
		"PORT":    "8080",
		"FLAG":    "true",
		"EMPTY":   "",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := Parse([]byte(`
api_token: ${TOKEN}
public_url: "https://${NULLISH}.example"
max_body_bytes: ${BYTES}
connectors:
  x:
    max_concurrency: ${N}
    settings:
      port: ${PORT}
      quoted_port: "${PORT}"
      flag: ${FLAG}
      password: ${NULLISH}
      empty: ${EMPTY}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIToken != env["TOKEN"] {
		t.Errorf("api_token %q: a value with quotes, colons and line breaks must stay one value", cfg.APIToken)
	}
	if cfg.Listen != DefaultListen {
		t.Errorf("listen %q: an env value changed the file's structure", cfg.Listen)
	}
	if cfg.PublicURL != "https://null.example" || cfg.MaxBodyBytes != 2048 {
		t.Errorf("public_url %q, max_body_bytes %d", cfg.PublicURL, cfg.MaxBodyBytes)
	}
	x := cfg.For("x")
	if x.MaxConcurrency != 7 {
		t.Errorf("max_concurrency %d", x.MaxConcurrency)
	}
	want := map[string]any{"port": 8080, "quoted_port": "8080", "flag": true, "password": "null", "empty": ""}
	for k, v := range want {
		if x.Settings[k] != v {
			t.Errorf("settings.%s = %#v (%T), want %#v", k, x.Settings[k], x.Settings[k], v)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want string }{
		{"listn: x\n", "field listn not found"},
		{"defaults:\n  timeout: soon\n", "is not a duration"},
		{"listen: [\n", "yaml"},
	} {
		_, err := Parse([]byte(tc.yaml), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
	if cfg, err := Parse(nil, func(string) string { return "" }); err != nil || cfg.Listen != DefaultListen {
		t.Errorf("empty file: %v %+v", err, cfg)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:1\napi_token: ${T}\nconnectors:\n  a:\n    settings: {k: ${T}}\n"), "x: y")
	f.Add([]byte("defaults:\n  timeout: 5s\n"), "\"")
	f.Add([]byte(""), "")
	f.Fuzz(func(t *testing.T, b []byte, val string) {
		cfg, err := Parse(b, func(string) string { return val })
		if err == nil {
			_ = cfg.For("a") // must not panic on whatever parsed
		}
	})
}
