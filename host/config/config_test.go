package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsValidate(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.PluginsDir != "./bin/plugins" || c.DataDir != "./data" || c.For("x").Timeout.D() != 60*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestLoadFileEnvPrecedence(t *testing.T) {
	t.Setenv("CH_TEST_SECRET", "from-env-secret")
	p := write(t, `
listen: 127.0.0.1:9999
api_token: ${CH_TEST_SECRET}
defaults:
  timeout: 5s
connectors:
  stoa:
    timeout: 2m
    stream_timeout: 1h
    max_concurrency: 4
    settings: {environment: dev, download_workers: 3}
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9999" || c.APIToken != "from-env-secret" {
		t.Fatalf("file: %+v", c)
	}
	env := map[string]string{EnvListen: "127.0.0.1:7777", EnvMaxBodyBytes: "2048"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7777" || c.MaxBodyBytes != 2048 {
		t.Fatalf("env: %+v", c)
	}
	stoa := c.For("stoa")
	if stoa.Timeout.D() != 2*time.Minute || stoa.StreamTimeout.D() != time.Hour || stoa.MaxConcurrency != 4 || stoa.Settings["environment"] != "dev" {
		t.Fatalf("stoa: %+v", stoa)
	}
	if other := c.For("other"); other.Timeout.D() != 5*time.Second || other.StreamTimeout != 0 || other.MaxConcurrency != DefaultConcurrency {
		t.Fatalf("other: %+v", other)
	}
	if err := c.ApplyEnv(func(k string) string {
		if k == EnvMaxBodyBytes {
			return "lots"
		}
		return ""
	}); err == nil {
		t.Fatal("bad number accepted")
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"unknown key":   "lisen: x\n",
		"bad duration":  "defaults:\n  timeout: soon\n",
		"not yaml":      "listen: [\n",
		"negative time": "defaults:\n  timeout: -1s\n",
	}
	for name, body := range cases {
		if _, err := Load(write(t, body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := Load(write(t, "")); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Listen = ""
	c.LogFormat = "xml"
	c.LogLevel = "loud"
	c.EncryptionKey = "short"
	c.MaxBodyBytes = 0
	c.Connectors = map[string]Connector{"a": {SHA256: "zz", MaxConcurrency: -1}}
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"listen", "log_format", "log_level", "encryption_key", "max_body_bytes", "connectors.a.sha256", "connectors.a.max_concurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %s in %v", want, err)
		}
	}
}
