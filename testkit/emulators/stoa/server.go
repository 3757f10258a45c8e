// Package stoaemu is a local Stoa: an HTTP server on 127.0.0.1 that speaks the
// Stoa wire format of PROTOCOLS.md ("Stoa") — REST login, the OAuth2
// client-credentials token endpoint, order, sign and presigned object
// downloads of Parquet files — over a deterministic generated catalog, with
// per-request fault injection for tests.
//
// One server serves both base URLs: the auth base is AuthURL() (URL()+"/auth")
// and the API base is APIURL() (URL()+"/api"). Presigned object URLs point at
// URL()+"/objects/{key}".
package stoaemu

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Default credentials accepted by a server whose Options leave them empty.
const (
	DefaultEmail        = "user@example.com"
	DefaultPassword     = "securepassword"
	DefaultClientID     = "client_id_example"
	DefaultClientSecret = "client_secret_example"
)

// Options configure a Server. Zero values select the defaults documented on
// each field.
type Options struct {
	// Addr is the listen address; default "127.0.0.1:0" (a free port).
	Addr string
	// Email and Password are the REST login credentials; defaults
	// DefaultEmail and DefaultPassword.
	Email, Password string
	// ClientID and ClientSecret are the OAuth2 client credentials; defaults
	// DefaultClientID and DefaultClientSecret.
	ClientID, ClientSecret string
	// Products is the catalog; default DefaultProducts().
	Products []Product
	// SignTTL is how long a presigned URL stays valid; default 15 minutes.
	SignTTL time.Duration
	// TokenTTL is the lifetime of access tokens; default 1 hour.
	TokenTTL time.Duration
	// SigningKey is the HMAC key of presigned URLs; default a random key.
	SigningKey []byte
}

// Product is one data product of the catalog: the objects an order with these
// five identifying fields returns.
type Product struct {
	GroupName string
	Name      string
	Workspace string
	OwnerID   string
	// Version defaults to "1.0".
	Version string
	// Objects is the number of Parquet objects; default 1, at most 999999.
	Objects int
	// RowsPerObject defaults to 200.
	RowsPerObject int
	// RowGroupRows is the maximum row-group length; default 64.
	RowGroupRows int
}

// DefaultProducts is the catalog of a server whose Options.Products is nil:
// the example product of the Python client's documentation in workspace
// "apps" with 25 objects (more than one order page of 20), and a small one in
// workspace "cart".
func DefaultProducts() []Product {
	return []Product{
		{GroupName: "exampleGroup", Name: "exampleProduct", Workspace: "apps", OwnerID: "owner123", Version: "1.0",
			Objects: 25, RowsPerObject: 150, RowGroupRows: 40},
		{GroupName: "exampleGroup", Name: "exampleProduct", Workspace: "cart", OwnerID: "owner456", Version: "1.0",
			Objects: 3, RowsPerObject: 50, RowGroupRows: 16},
	}
}

// objectRef locates an object of the catalog.
type objectRef struct {
	product int
	index   int
}

// Server is a running (after Start) local Stoa.
type Server struct {
	opts    Options
	keys    [][]string // per product, in creation (ascending) order
	objects map[string]objectRef

	auth *authServer

	ln   net.Listener
	http *http.Server
	url  string

	cacheMu sync.Mutex
	cache   map[string][]byte
	gen     singleflight.Group

	faults faultTable

	statsMu  sync.Mutex
	stats    Stats
	inflight int
}

// Stats counts the requests a server has answered, so tests can check how
// the client behaved on the wire.
type Stats struct {
	// Logins counts REST login requests, FailedLogins those rejected.
	Logins, FailedLogins int
	// TokenRequests counts OAuth2 token endpoint requests, FailedTokenRequests
	// those rejected.
	TokenRequests, FailedTokenRequests int
	// Orders and Signs count API requests (including rejected ones).
	Orders, Signs int
	// LastOrderQuery is the raw query string of the latest order request.
	LastOrderQuery string
	// Unauthorized counts API requests rejected with 401.
	Unauthorized int
	// ObjectGets counts object downloads (including rejected ones);
	// Downloads counts them per key.
	ObjectGets int
	Downloads  map[string]int
	// PeakConcurrentObjectGets is the largest number of object downloads
	// that were in progress at the same time.
	PeakConcurrentObjectGets int
}

// New returns a server for opts; call Start to listen.
func New(opts Options) *Server {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Email == "" {
		opts.Email = DefaultEmail
	}
	if opts.Password == "" {
		opts.Password = DefaultPassword
	}
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = DefaultClientSecret
	}
	if opts.Products == nil {
		opts.Products = DefaultProducts()
	}
	opts.Products = slices.Clone(opts.Products)
	for i := range opts.Products {
		p := &opts.Products[i]
		if p.Version == "" {
			p.Version = "1.0"
		}
		if p.Objects == 0 {
			p.Objects = 1
		}
		if p.RowsPerObject == 0 {
			p.RowsPerObject = 200
		}
		if p.RowGroupRows == 0 {
			p.RowGroupRows = 64
		}
	}
	if opts.SignTTL == 0 {
		opts.SignTTL = 15 * time.Minute
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	if len(opts.SigningKey) == 0 {
		opts.SigningKey = make([]byte, 32)
		_, _ = rand.Read(opts.SigningKey)
	}
	s := &Server{opts: opts, objects: map[string]objectRef{}, cache: map[string][]byte{}}
	s.stats.Downloads = map[string]int{}
	for pi, p := range opts.Products {
		keys := make([]string, 0, max(p.Objects, 0))
		for i := range max(p.Objects, 0) {
			k := fmt.Sprintf("%d.snappy.parquet", (pi+1)*1_000_000+i)
			keys = append(keys, k)
			s.objects[k] = objectRef{product: pi, index: i}
		}
		s.keys = append(s.keys, keys)
	}
	return s
}

// validate checks the catalog shape.
func (s *Server) validate() error {
	for i, p := range s.opts.Products {
		switch {
		case p.GroupName == "" || p.Name == "" || p.Workspace == "" || p.OwnerID == "":
			return fmt.Errorf("stoaemu: Products[%d]: GroupName, Name, Workspace and OwnerID are required", i)
		case p.Objects < 1 || p.Objects > 999_999:
			return fmt.Errorf("stoaemu: Products[%d].Objects: must be between 1 and 999999, got %d", i, p.Objects)
		case p.RowsPerObject < 0:
			return fmt.Errorf("stoaemu: Products[%d].RowsPerObject: must not be negative", i)
		case p.RowGroupRows < 1:
			return fmt.Errorf("stoaemu: Products[%d].RowGroupRows: must be positive", i)
		}
	}
	return nil
}

// Start listens on Options.Addr and serves in the background.
func (s *Server) Start() error {
	if s.http != nil {
		return errors.New("stoaemu: server already started")
	}
	if err := s.validate(); err != nil {
		return err
	}
	s.auth = newAuthServer(s.opts)
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("stoaemu: listen: %w", err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/rest-auth/login/", s.handleLogin)
	mux.HandleFunc("POST /auth/oauth/token/", s.handleToken)
	mux.HandleFunc("GET /api/v2/order/", s.handleOrder)
	mux.HandleFunc("GET /api/v2/sign/", s.handleSign)
	mux.HandleFunc("GET /objects/{key}", s.handleObject)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return nil
}

// URL is the server's root, e.g. "http://127.0.0.1:40123".
func (s *Server) URL() string { return s.url }

// AuthURL is the auth base URL (Stoa's auth host): URL()+"/auth".
func (s *Server) AuthURL() string { return s.url + "/auth" }

// APIURL is the API base URL: URL()+"/api".
func (s *Server) APIURL() string { return s.url + "/api" }

// Close stops the server and drops open connections.
func (s *Server) Close() {
	if s.http != nil {
		_ = s.http.Close()
	}
}

// Products returns the catalog with defaults filled in.
func (s *Server) Products() []Product { return slices.Clone(s.opts.Products) }

// Keys returns the object keys (order ids) of the product at index i of
// Products(), oldest first — the order of an ascending order request.
func (s *Server) Keys(i int) []string {
	if i < 0 || i >= len(s.keys) {
		return nil
	}
	return slices.Clone(s.keys[i])
}

// Object returns the bytes of the Parquet object key, generating and caching
// it on first use. The bytes are what a download of the key serves; callers
// must not modify them.
func (s *Server) Object(key string) ([]byte, error) {
	ref, ok := s.objects[key]
	if !ok {
		return nil, fmt.Errorf("stoaemu: no object %q", key)
	}
	s.cacheMu.Lock()
	b, ok := s.cache[key]
	s.cacheMu.Unlock()
	if ok {
		return b, nil
	}
	v, err, _ := s.gen.Do(key, func() (any, error) {
		p := s.opts.Products[ref.product]
		var buf bytesBuffer
		seed := uint64(ref.product+1) * 0x9E3779B97F4A7C15 //nolint:gosec // a small non-negative index
		if err := writeObject(&buf, seed, int64(ref.index)*int64(p.RowsPerObject), p.RowsPerObject, p.RowGroupRows); err != nil {
			return nil, err
		}
		s.cacheMu.Lock()
		s.cache[key] = buf.b
		s.cacheMu.Unlock()
		return buf.b, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// bytesBuffer is a minimal append-only io.Writer.
type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// Stats returns a snapshot of the request counters.
func (s *Server) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.stats
	st.Downloads = make(map[string]int, len(s.stats.Downloads))
	for k, v := range s.stats.Downloads {
		st.Downloads[k] = v
	}
	return st
}

// ResetStats zeroes the request counters.
func (s *Server) ResetStats() {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats = Stats{Downloads: map[string]int{}}
}

// ExpireTokens invalidates every access token issued so far (REST and
// OAuth2): the next API call with one of them gets 401.
func (s *Server) ExpireTokens() {
	if s.auth != nil {
		s.auth.expireAll()
	}
}

func (s *Server) count(f func(*Stats)) {
	s.statsMu.Lock()
	f(&s.stats)
	s.statsMu.Unlock()
}

// objectStarted and objectDone track concurrent downloads.
func (s *Server) objectStarted(key string) {
	s.statsMu.Lock()
	s.stats.ObjectGets++
	s.stats.Downloads[key]++
	s.inflight++
	s.stats.PeakConcurrentObjectGets = max(s.stats.PeakConcurrentObjectGets, s.inflight)
	s.statsMu.Unlock()
}

func (s *Server) objectDone() {
	s.statsMu.Lock()
	s.inflight--
	s.statsMu.Unlock()
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
