// Package oauthserver is a real OAuth 2.0 authorization server for tests
// and `make run`, built on github.com/go-oauth2/oauth2/v4, listening on
// 127.0.0.1:
//
//   - GET  /oauth/authorize — authorization code flow (PKCE plain or S256),
//     approved at once for Options.UserID;
//   - POST /oauth/token (GET too) — authorization_code, refresh_token (with
//     rotation: the old refresh and access tokens stop working) and
//     client_credentials; client authentication by HTTP Basic
//     (RFC 6749 §2.3.1, form-encoded) or in the body; bodies as form, JSON
//     or query parameters;
//   - GET  /api/me — a protected resource: 200 {client_id, user_id, scope}
//     for a valid bearer token, 401 otherwise.
//
// Tests read counters (token requests by grant type, resource calls),
// look at the last token requests, revoke tokens, and make the next
// requests fail with any OAuth error (FailToken, FailAuthorize).
package oauthserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"
)

// Paths served.
const (
	AuthorizePath = "/oauth/authorize"
	TokenPath     = "/oauth/token" //nolint:gosec // a URL path, not a credential
	ResourcePath  = "/api/me"
)

// Grant types, as counted by TokenRequests.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Options configure a Server. The zero value works.
type Options struct {
	// AccessTokenLifetime of issued access tokens (default 1h).
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime of issued refresh tokens (default 24h).
	RefreshTokenLifetime time.Duration
	// NoRotation keeps refresh tokens valid across refreshes; by default
	// each refresh issues a new refresh token and revokes the old one.
	NoRotation bool
	// RequirePKCE refuses authorization requests without a code challenge.
	RequirePKCE bool
	// UserID is the resource owner who approves every authorization
	// (default "user-1").
	UserID string
	// Addr to listen on (default 127.0.0.1:0).
	Addr string
}

// Client is a registered OAuth client.
type Client struct {
	ID     string
	Secret string
	// RedirectBase, when set, is the prefix every redirect URI must start
	// with (scheme, host, port and path prefix); empty allows any.
	RedirectBase string
}

// TokenRequest is what the server saw of one token request.
type TokenRequest struct {
	Method      string
	ContentType string
	// ClientAuth is "basic" or "post".
	ClientAuth string
	GrantType  string
	// Params are the request's parameters, however they were sent.
	Params url.Values
}

// Server is a running OAuth 2.0 server.
type Server struct {
	opts    Options
	manager *manage.Manager
	clients *store.ClientStore
	srv     *server.Server
	handler http.Handler

	httpSrv *http.Server
	ln      net.Listener
	done    chan struct{}

	mu            sync.Mutex
	counts        map[string]int
	resourceCalls int
	lastTokens    []TokenRequest
	failToken     []string
	failAuthorize []string
}

// New builds a server; Start serves it.
func New(opts Options) (*Server, error) {
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = time.Hour
	}
	if opts.RefreshTokenLifetime <= 0 {
		opts.RefreshTokenLifetime = 24 * time.Hour
	}
	if opts.UserID == "" {
		opts.UserID = "user-1"
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	s := &Server{opts: opts, clients: store.NewClientStore(), counts: map[string]int{}}
	m := manage.NewDefaultManager()
	tokens, err := store.NewMemoryTokenStore()
	if err != nil {
		return nil, err
	}
	m.MapTokenStorage(tokens)
	m.MapClientStorage(s.clients)
	m.SetAuthorizeCodeTokenCfg(&manage.Config{AccessTokenExp: opts.AccessTokenLifetime, RefreshTokenExp: opts.RefreshTokenLifetime, IsGenerateRefresh: true})
	m.SetClientTokenCfg(&manage.Config{AccessTokenExp: opts.AccessTokenLifetime})
	m.SetRefreshTokenCfg(&manage.RefreshingConfig{
		AccessTokenExp:     opts.AccessTokenLifetime,
		RefreshTokenExp:    opts.RefreshTokenLifetime,
		IsGenerateRefresh:  !opts.NoRotation,
		IsResetRefreshTime: true,
		IsRemoveAccess:     true,
		IsRemoveRefreshing: !opts.NoRotation,
	})
	m.SetValidateURIHandler(validateRedirect)
	s.manager = m

	cfg := server.NewConfig()
	cfg.AllowGetAccessRequest = true
	cfg.ForcePKCE = opts.RequirePKCE
	cfg.AllowedGrantTypes = []oauth2.GrantType{oauth2.AuthorizationCode, oauth2.Refreshing, oauth2.ClientCredentials}
	cfg.AllowedResponseTypes = []oauth2.ResponseType{oauth2.Code}
	srv := server.NewServer(cfg, m)
	srv.ClientInfoHandler = s.clientInfo
	srv.UserAuthorizationHandler = s.authorizeUser
	srv.InternalErrorHandler = internalError
	srv.PreRedirectErrorHandler = preRedirectError
	s.srv = srv

	mux := http.NewServeMux()
	mux.HandleFunc(AuthorizePath, s.handleAuthorize)
	mux.HandleFunc(TokenPath, s.handleToken)
	mux.HandleFunc(ResourcePath, s.handleResource)
	s.handler = mux
	return s, nil
}

// Start builds and starts a server (New, then Start).
func Start(opts Options) (*Server, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.httpSrv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		_ = s.httpSrv.Serve(ln)
	}()
	return nil
}

// Handler is the server's HTTP handler (for use without Start).
func (s *Server) Handler() http.Handler { return s.handler }

// URL is the base URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Port is the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops the server and waits for it.
func (s *Server) Close() {
	if s.httpSrv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.httpSrv.Shutdown(ctx); err != nil {
		_ = s.httpSrv.Close()
	}
	<-s.done
}

// AddClient registers (or replaces) a client.
func (s *Server) AddClient(c Client) error {
	if c.ID == "" {
		return fmt.Errorf("client id is empty")
	}
	return s.clients.Set(c.ID, &models.Client{ID: c.ID, Secret: c.Secret, Domain: c.RedirectBase})
}

// TokenRequests returns how many token requests of a grant type arrived
// (failed ones included).
func (s *Server) TokenRequests(grantType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[grantType]
}

// ResourceCalls returns how many requests reached /api/me.
func (s *Server) ResourceCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resourceCalls
}

// LastTokenRequests returns the token requests seen, oldest first (the
// last 100).
func (s *Server) LastTokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenRequest(nil), s.lastTokens...)
}

// FailToken makes the next n token requests answer the OAuth error code
// (e.g. "invalid_grant"), with the status RFC 6749 and go-oauth2 give it.
func (s *Server) FailToken(oauthError string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.failToken = append(s.failToken, oauthError)
	}
}

// FailAuthorize makes the next n authorization requests redirect back with
// error=oauthError (e.g. "access_denied").
func (s *Server) FailAuthorize(oauthError string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.failAuthorize = append(s.failAuthorize, oauthError)
	}
}

// RevokeAccessToken makes an access token invalid at once.
func (s *Server) RevokeAccessToken(token string) error {
	return s.manager.RemoveAccessToken(context.Background(), token)
}

// RevokeRefreshToken makes a refresh token invalid at once.
func (s *Server) RevokeRefreshToken(token string) error {
	return s.manager.RemoveRefreshToken(context.Background(), token)
}

// ErrorCodes are the OAuth error codes the server can answer (RFC 6749
// §4.1.2.1 and §5.2, as go-oauth2 defines them).
func ErrorCodes() []string {
	seen := map[string]bool{}
	var out []string
	for e := range oerrors.Descriptions {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e.Error())
		}
	}
	return out
}

func (s *Server) next(list *[]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(*list) == 0 {
		return ""
	}
	e := (*list)[0]
	*list = (*list)[1:]
	return e
}

// injected is an error a test asked for.
type injected struct{ code string }

func (e injected) Error() string { return e.code }

// internalError renders errors go-oauth2 does not know: injected ones,
// and a missing PKCE verifier (invalid_grant per RFC 7636 §4.6).
func internalError(err error) *oerrors.Response {
	var e injected
	if errors.As(err, &e) {
		status := http.StatusBadRequest
		for known, st := range oerrors.StatusCodes {
			if known.Error() == e.code {
				status = st
			}
		}
		return &oerrors.Response{Error: fmt.Errorf("%s", e.code), Description: "injected by the test", StatusCode: status}
	}
	switch {
	case errors.Is(err, oerrors.ErrMissingCodeVerifier), errors.Is(err, oerrors.ErrInvalidCodeChallenge):
		return &oerrors.Response{Error: oerrors.ErrInvalidGrant, Description: "PKCE verification failed", StatusCode: http.StatusBadRequest}
	case errors.Is(err, oerrors.ErrInvalidRedirectURI):
		return &oerrors.Response{Error: oerrors.ErrInvalidRequest, Description: "redirect_uri is not registered for this client", StatusCode: http.StatusBadRequest}
	}
	return nil
}

// preRedirectError answers problems with the client or redirect URI
// directly instead of redirecting to an unverified URI (RFC 6749 §4.1.2.1).
func preRedirectError(w http.ResponseWriter, req *server.AuthorizeRequest, err error) error {
	if req != nil && !errors.Is(err, oerrors.ErrInvalidRedirectURI) && !errors.Is(err, oerrors.ErrInvalidClient) && req.RedirectURI != "" {
		return redirectWithError(w, req, err)
	}
	code, desc := "invalid_request", "unknown client or unregistered redirect_uri"
	if _, known := oerrors.Descriptions[err]; known && !errors.Is(err, oerrors.ErrInvalidClient) {
		code, desc = err.Error(), oerrors.Descriptions[err]
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	return json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func redirectWithError(w http.ResponseWriter, req *server.AuthorizeRequest, err error) error {
	u, perr := url.Parse(req.RedirectURI)
	if perr != nil {
		return perr
	}
	code := err.Error()
	if _, known := oerrors.Descriptions[err]; !known {
		if !errors.As(err, new(injected)) {
			code = oerrors.ErrServerError.Error()
		}
	}
	q := u.Query()
	q.Set("error", code)
	q.Set("error_description", "refused by the test authorization server")
	if req.State != "" {
		q.Set("state", req.State)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusFound)
	return nil
}

// validateRedirect: a redirect URI must start with the client's
// RedirectBase (when set), comparing scheme, host and port exactly.
func validateRedirect(base, redirect string) error {
	if base == "" {
		return nil
	}
	b, err1 := url.Parse(base)
	r, err2 := url.Parse(redirect)
	if err1 != nil || err2 != nil || b.Scheme != r.Scheme || b.Host != r.Host || !strings.HasPrefix(r.Path, b.Path) {
		return oerrors.ErrInvalidRedirectURI
	}
	return nil
}

// clientInfo authenticates the client: HTTP Basic (form-encoded id and
// secret, RFC 6749 §2.3.1) or client_id/client_secret parameters.
func (s *Server) clientInfo(r *http.Request) (string, string, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return "", "", oerrors.ErrInvalidClient
		}
	} else {
		id, secret = r.Form.Get("client_id"), r.Form.Get("client_secret")
	}
	if id == "" {
		return "", "", oerrors.ErrInvalidClient
	}
	cli, err := s.clients.GetByID(r.Context(), id)
	if err != nil || cli.GetSecret() != secret {
		return "", "", oerrors.ErrInvalidClient
	}
	return id, secret, nil
}

func (s *Server) authorizeUser(http.ResponseWriter, *http.Request) (string, error) {
	if e := s.next(&s.failAuthorize); e != "" {
		return "", injected{e}
	}
	return s.opts.UserID, nil
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := s.srv.HandleAuthorizeRequest(w, r); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

// handleToken parses the parameters however they came (form body, JSON
// body, query), records and counts the request, then lets go-oauth2
// answer (or answers an injected error).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := parseParams(r); err != nil {
		writeTokenError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	_, _, basic := r.BasicAuth()
	rec := TokenRequest{Method: r.Method, ContentType: r.Header.Get("Content-Type"), ClientAuth: "post", GrantType: r.Form.Get("grant_type"), Params: cloneValues(r.Form)}
	if basic {
		rec.ClientAuth = "basic"
	}
	s.mu.Lock()
	s.counts[rec.GrantType]++
	s.lastTokens = append(s.lastTokens, rec)
	if len(s.lastTokens) > 100 {
		s.lastTokens = s.lastTokens[1:]
	}
	s.mu.Unlock()
	if e := s.next(&s.failToken); e != "" {
		resp := internalError(injected{e})
		writeTokenError(w, resp.StatusCode, e, resp.Description)
		return
	}
	if rec.GrantType == GrantRefreshToken {
		// go-oauth2 does not check that a refresh token belongs to the
		// client presenting it; a real server does.
		id, _, err := s.clientInfo(r)
		if err != nil {
			writeTokenError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
			return
		}
		if ti, err := s.manager.LoadRefreshToken(r.Context(), r.Form.Get("refresh_token")); err == nil && ti.GetClientID() != id {
			writeTokenError(w, http.StatusBadRequest, "invalid_grant", "refresh token was issued to another client")
			return
		}
	}
	_ = s.srv.HandleTokenRequest(w, r)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// parseParams fills r.Form from the query and a form or JSON body.
func parseParams(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") {
		var body map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&body); err != nil {
			return fmt.Errorf("JSON body: %w", err)
		}
		form := r.URL.Query()
		post := url.Values{}
		for k, v := range body {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("JSON body: %s must be a string", k)
			}
			form.Set(k, s)
			post.Set(k, s)
		}
		r.Form, r.PostForm = form, post
		return nil
	}
	return r.ParseForm()
}

func writeTokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// handleResource is the protected resource.
func (s *Server) handleResource(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.resourceCalls++
	s.mu.Unlock()
	ti, err := s.srv.ValidationBearerToken(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_token", "error_description": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"client_id": ti.GetClientID(), "user_id": ti.GetUserID(), "scope": ti.GetScope()})
}
