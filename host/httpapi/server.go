// Package httpapi is the host's HTTP API (SPEC "Host HTTP API"): health,
// connector listing and info, capability calls (JSON and NDJSON streams),
// OpenAPI and metrics. Other host features mount their routes on it.
package httpapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/host/metrics"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/sdk"
)

// Options configure the API.
type Options struct {
	Router  *router.Router
	Metrics *metrics.Metrics
	Logger  hclog.Logger
	// APIToken, when set, is required as a bearer token on /v1 routes
	// (except those mounted with Public).
	APIToken string
	// MaxBodyBytes limits request bodies.
	MaxBodyBytes int64
}

// Server is the HTTP API.
type Server struct {
	opts       Options
	mux        *http.ServeMux
	public     []string // path prefixes exempt from the API token
	extraPaths []openAPIPath

	idPrefix string
	idSeq    atomic.Uint64
}

// New returns the API with its built-in routes.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 10 << 20
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := &Server{opts: opts, mux: http.NewServeMux(), idPrefix: hex.EncodeToString(b[:])}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /v1/connectors", s.listConnectors)
	s.mux.HandleFunc("GET /v1/connectors/{app_id}", s.connectorInfo)
	s.mux.HandleFunc("/v1/connectors/{app_id}/{capability}", s.invoke)
	s.mux.HandleFunc("GET /openapi.json", s.openAPI)
	if opts.Metrics != nil {
		s.mux.Handle("GET /metrics", opts.Metrics.Handler())
	}
	s.mux.HandleFunc("/", s.notFound)
	return s
}

// Handle mounts a handler (e.g. the OAuth callback, /events, inbound
// routes). Routes under /v1 and /events require the API token unless public
// is true.
func (s *Server) Handle(pattern string, h http.Handler, public bool) {
	s.mux.Handle(pattern, h)
	if public {
		path := pattern
		if i := strings.IndexByte(path, ' '); i >= 0 {
			path = path[i+1:]
		}
		if j := strings.IndexByte(path, '{'); j >= 0 {
			path = path[:j]
		}
		s.public = append(s.public, path)
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.APIToken != "" && needsToken(r.URL.Path) && !s.isPublic(r.URL.Path) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="connector-host"`)
			s.writeHostError(w, sdk.Unauthenticated, "httpapi.auth", "missing or wrong API token: send Authorization: Bearer <token>")
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// needsToken reports whether path is behind the API token: the /v1 API and
// the events gateway (which reaches every connector).
func needsToken(path string) bool {
	return strings.HasPrefix(path, "/v1/") || path == "/events" || strings.HasPrefix(path, "/events/")
}

func (s *Server) isPublic(path string) bool {
	for _, p := range s.public {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.opts.APIToken)) == 1
}

// requestID returns the caller's X-Request-Id when sane, else a new one.
func (s *Server) requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && isPrintableASCII(id) {
		return id
	}
	return s.idPrefix + "-" + hexUint(s.idSeq.Add(1))
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func hexUint(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	i := len(b)
	for {
		i--
		b[i] = digits[v&0xf]
		v >>= 4
		if v == 0 {
			return string(b[i:])
		}
	}
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeHostError(w, sdk.NotFound, "httpapi.route", "no route for "+r.Method+" "+r.URL.Path)
}
