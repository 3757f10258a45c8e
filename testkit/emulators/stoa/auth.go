package stoaemu

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
)

// restClientID is the internal OAuth2 client the REST login issues its tokens
// through, so that every access token lives in one store.
const restClientID = "stoaemu-rest-login"

// authServer issues and validates access tokens with go-oauth2: the token
// endpoint is a real OAuth2 server (client credentials, HTTP Basic client
// authentication, form body); REST logins get password-grant tokens of the
// same manager.
type authServer struct {
	email, password string
	manager         *manage.Manager
	oauth           *server.Server
	tokens          *memoryTokenStore
}

func newAuthServer(opts Options) *authServer {
	m := manage.NewDefaultManager()
	m.SetClientTokenCfg(&manage.Config{AccessTokenExp: opts.TokenTTL})
	m.SetPasswordTokenCfg(&manage.Config{AccessTokenExp: opts.TokenTTL})
	tokens := &memoryTokenStore{byAccess: map[string]oauth2.TokenInfo{}}
	m.MapTokenStorage(tokens)
	m.MapClientStorage(clientStore{
		opts.ClientID: &models.Client{ID: opts.ClientID, Secret: opts.ClientSecret},
		restClientID:  &models.Client{ID: restClientID, Public: true},
	})
	srv := server.NewServer(&server.Config{
		TokenType:         "Bearer",
		AllowedGrantTypes: []oauth2.GrantType{oauth2.ClientCredentials},
	}, m)
	srv.SetClientInfoHandler(server.ClientBasicHandler)
	return &authServer{email: opts.Email, password: opts.Password, manager: m, oauth: srv, tokens: tokens}
}

// login checks REST credentials and issues a token. ok is false for wrong
// credentials.
func (a *authServer) login(ctx context.Context, email, password string) (token string, ok bool, err error) {
	emailOK := subtle.ConstantTimeCompare([]byte(email), []byte(a.email)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(password), []byte(a.password)) == 1
	if !emailOK || !passOK {
		return "", false, nil
	}
	ti, err := a.manager.GenerateAccessToken(ctx, oauth2.PasswordCredentials, &oauth2.TokenGenerateRequest{
		ClientID: restClientID, UserID: email,
	})
	if err != nil {
		return "", false, err
	}
	return ti.GetAccess(), true, nil
}

// authorized reports whether r carries a valid bearer token.
func (a *authServer) authorized(r *http.Request) bool {
	_, err := a.oauth.ValidationBearerToken(r)
	return err == nil
}

func (a *authServer) expireAll() { a.tokens.clear() }

// handleLogin serves POST {auth}/rest-auth/login/ like dj-rest-auth: JSON
// {"email","password"} → {"access_token", "user"}; 400 with field errors
// otherwise.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	f, ok := s.startFault(w, r, kindOther, "")
	if !ok {
		return
	}
	var body struct {
		Email    *string `json:"email"`
		Password *string `json:"password"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var resp response
	switch {
	case err != nil || json.Unmarshal(raw, &body) != nil:
		resp = jsonResponse(http.StatusBadRequest, map[string]any{"non_field_errors": []string{"Invalid JSON body."}})
	case body.Email == nil || *body.Email == "":
		resp = jsonResponse(http.StatusBadRequest, map[string]any{"email": []string{"This field is required."}})
	case body.Password == nil || *body.Password == "":
		resp = jsonResponse(http.StatusBadRequest, map[string]any{"password": []string{"This field is required."}})
	default:
		token, valid, err := s.auth.login(r.Context(), *body.Email, *body.Password)
		switch {
		case err != nil:
			resp = jsonResponse(http.StatusInternalServerError, map[string]any{"detail": "token store failure"})
		case !valid:
			resp = jsonResponse(http.StatusBadRequest, map[string]any{"non_field_errors": []string{"Unable to log in with provided credentials."}})
		default:
			resp = jsonResponse(http.StatusOK, map[string]any{
				"access_token": token,
				"user":         map[string]any{"email": *body.Email},
			})
		}
	}
	s.count(func(st *Stats) {
		st.Logins++
		if resp.status != http.StatusOK {
			st.FailedLogins++
		}
	})
	s.respond(w, r, resp, f)
}

// handleToken serves POST {auth}/oauth/token/ through go-oauth2.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	// Status and Delay faults apply; go-oauth2 writes the body itself, so
	// the body faults (slow, truncated, short) do not.
	if _, ok := s.startFault(w, r, kindOther, ""); !ok {
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	// PROTOCOLS.md: a form body. go-oauth2 would also read the grant type
	// from the query string; a token client that sends JSON or a query is
	// wrong for Stoa and must see an error.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		rec.Header().Set("Content-Type", "application/json;charset=UTF-8")
		rec.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(rec).Encode(map[string]string{
			"error":             "invalid_request",
			"error_description": "the token request must have a form body (application/x-www-form-urlencoded)",
		})
	} else {
		_ = s.auth.oauth.HandleTokenRequest(rec, r)
	}
	s.count(func(st *Stats) {
		st.TokenRequests++
		if rec.status != http.StatusOK {
			st.FailedTokenRequests++
		}
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// requireToken answers 401 and returns false when r has no valid bearer
// token.
func (s *Server) requireToken(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if s.auth.authorized(r) {
		return true
	}
	s.count(func(st *Stats) { st.Unauthorized++ })
	detail := "Authentication credentials were not provided."
	if r.Header.Get("Authorization") != "" {
		detail = "Given token not valid for any token type"
	}
	resp := jsonResponse(http.StatusUnauthorized, map[string]any{"detail": detail})
	resp.header.Set("WWW-Authenticate", `Bearer realm="api"`)
	s.respond(w, r, resp, f)
	return false
}

// clientStore is a fixed oauth2.ClientStore.
type clientStore map[string]oauth2.ClientInfo

func (c clientStore) GetByID(_ context.Context, id string) (oauth2.ClientInfo, error) {
	if ci, ok := c[id]; ok {
		return ci, nil
	}
	return nil, oerrors.ErrInvalidClient
}

// memoryTokenStore is an oauth2.TokenStore in a map (the go-oauth2 memory
// store needs buntdb and runs a background goroutine that cannot be stopped).
type memoryTokenStore struct {
	mu       sync.Mutex
	byAccess map[string]oauth2.TokenInfo
}

var errNoToken = errors.New("stoaemu: no such token")

func (m *memoryTokenStore) Create(_ context.Context, info oauth2.TokenInfo) error {
	if info.GetAccess() == "" {
		return oerrors.ErrInvalidAccessToken
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byAccess[info.GetAccess()] = info
	return nil
}

func (m *memoryTokenStore) RemoveByCode(context.Context, string) error { return nil }

func (m *memoryTokenStore) RemoveByAccess(_ context.Context, access string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.byAccess, access)
	return nil
}

func (m *memoryTokenStore) RemoveByRefresh(context.Context, string) error { return nil }

func (m *memoryTokenStore) GetByCode(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, errNoToken
}

func (m *memoryTokenStore) GetByAccess(_ context.Context, access string) (oauth2.TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ti, ok := m.byAccess[access]
	if !ok {
		return nil, oerrors.ErrInvalidAccessToken
	}
	return ti, nil
}

func (m *memoryTokenStore) GetByRefresh(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, errNoToken
}

func (m *memoryTokenStore) clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.byAccess)
}
