package sdk

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/internal/redact"
)

// secrets holds the credentials of the calls in flight in this process;
// they are masked in every log line and error message.
var secrets = redact.NewSet()

// stderr is the process's real standard error, captured before go-plugin
// redirects os.Stderr to a stream the host discards: log lines must go to
// the real one, which the host reads and re-logs.
var stderr = os.Stderr

// timestampLayout is hclog's JSON timestamp, which go-plugin parses.
const timestampLayout = "2006-01-02T15:04:05.000000Z07:00"

// newLogger returns the default plugin logger: hclog JSON on w, which the
// host parses and re-logs tagged with the app_id, with secrets masked.
func newLogger(name string, w io.Writer) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("CONNECTOR_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     secrets.Writer(w),
		JSONFormat: true,
	})
}

// logger returns the integration's logger, creating the default one.
func (i *Integration) logger() hclog.Logger {
	if i.Logger == nil {
		i.Logger = newLogger(i.AppID, stderr)
	}
	return i.Logger
}

// Slog returns a log/slog logger that writes the same hclog JSON lines as
// the plugin logger (so the host parses and tags them), with credentials
// masked. Use it for libraries that log through slog.
func (i *Integration) Slog() *slog.Logger {
	level := slog.LevelInfo
	if l := hclog.LevelFromString(os.Getenv("CONNECTOR_LOG_LEVEL")); l != hclog.NoLevel && l <= hclog.Debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(secrets.Writer(stderr), &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
				a.Value = slog.StringValue(a.Value.Time().Format(timestampLayout))
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}).WithAttrs([]slog.Attr{slog.String("@module", i.AppID)}))
}
