package stoa

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/sdk"
)

// Credentials authenticate a Client, in one of three modes, the first that
// applies:
//   - AccessToken: bearer mode, an OAuth2 token obtained by someone else
//     (the host's OAuth module);
//   - ClientID and ClientSecret: OAuth2 client credentials, the token
//     fetched from {auth}/oauth/token/ (HTTP Basic client authentication,
//     form body), as the Python client's "oauth2" mode does;
//   - Email and Password: the REST login (auth kind "basic", the email as
//     username).
//
// Tokens the client obtains itself are cached in its TokenCache and
// obtained again, once, when Stoa answers 401.
type Credentials struct {
	Email        string
	Password     string
	ClientID     string
	ClientSecret string
	AccessToken  string
}

// authMode is how a Client authenticates.
type authMode int

const (
	modeREST authMode = iota
	modeClientCredentials
	modeBearer
)

func (c Credentials) mode() authMode {
	switch {
	case c.AccessToken != "":
		return modeBearer
	case c.ClientID != "":
		return modeClientCredentials
	}
	return modeREST
}

// RetryPolicy governs retries of failed requests (5xx, 429, 408, timeouts,
// dropped connections, truncated or unreadable objects).
type RetryPolicy struct {
	// Attempts is the number of tries of one request; default 4.
	Attempts int
	// BaseDelay is the backoff before the second try; it doubles per try
	// (with jitter), up to MaxDelay. Defaults 250ms and 5s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits for; a
	// longer one fails the request with rate_limit at once. Default 30s.
	MaxRetryAfter time.Duration
}

// Options tune a Client beyond its Settings. The zero value is ready to use.
type Options struct {
	// TokenCache keeps REST login tokens between Clients; nil gives the
	// Client a private cache.
	TokenCache *TokenCache
	// HTTPClient sends the requests; nil uses a shared client with
	// connection reuse.
	HTTPClient *http.Client
	// Retry is the retry policy; zero fields take the defaults.
	Retry RetryPolicy
	// SpoolDir is where downloads larger than SpoolMemoryBytes are kept
	// until they are read; default os.TempDir().
	SpoolDir string
	// SpoolMemoryBytes is the largest object kept in memory; larger ones go
	// to a temporary file. Default 4 MiB: with download_workers objects
	// held at most, 40 MiB with the default 10 workers.
	SpoolMemoryBytes int64
	// BatchRows bounds the rows decoded (and encoded) at a time; default
	// 1024.
	BatchRows int
	// Logger receives a line per retried request (what failed, its code
	// and the pause; never a secret or a URL); nil logs nothing.
	Logger hclog.Logger
}

// Client talks to one Stoa deployment with one set of credentials. It is
// safe for concurrent use.
type Client struct {
	cfg   Config
	creds Credentials
	cache *TokenCache
	key   [32]byte // cache key of the REST credentials
	http  *http.Client
	retry RetryPolicy
	opts  Options
}

// sharedHTTP is the default HTTP client: one connection pool for every
// Client of the process.
var sharedHTTP = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = MaxDownloadWorkers
	return &http.Client{Transport: t}
}()

// New checks settings and credentials and returns a client. No network
// call is made. Credentials need either AccessToken, or Email and Password.
func New(settings Settings, creds Credentials, opts Options) (*Client, error) {
	cfg, err := settings.Resolve()
	if err != nil {
		return nil, err
	}
	switch creds.mode() {
	case modeClientCredentials:
		if creds.ClientSecret == "" {
			return nil, sdk.Errorf(sdk.BadRequest, "auth.oauth_client_credentials.client_secret: is required")
		}
	case modeREST:
		switch {
		case creds.Email == "":
			return nil, sdk.Errorf(sdk.BadRequest, "auth.basic.username: the Stoa account email is required (or give OAuth2 credentials)")
		case creds.Password == "":
			return nil, sdk.Errorf(sdk.BadRequest, "auth.basic.password: is required")
		}
	}
	c := &Client{cfg: cfg, creds: creds, cache: opts.TokenCache, http: opts.HTTPClient, retry: opts.Retry, opts: opts}
	if c.cache == nil {
		c.cache = NewTokenCache()
	}
	if c.http == nil {
		c.http = sharedHTTP
	}
	if c.retry.Attempts <= 0 {
		c.retry.Attempts = 4
	}
	if c.retry.BaseDelay <= 0 {
		c.retry.BaseDelay = 250 * time.Millisecond
	}
	if c.retry.MaxDelay <= 0 {
		c.retry.MaxDelay = 5 * time.Second
	}
	if c.retry.MaxRetryAfter <= 0 {
		c.retry.MaxRetryAfter = 30 * time.Second
	}
	if c.opts.SpoolMemoryBytes <= 0 {
		c.opts.SpoolMemoryBytes = 4 << 20
	}
	if c.opts.BatchRows <= 0 {
		c.opts.BatchRows = 1024
	}
	if c.opts.Logger == nil {
		c.opts.Logger = hclog.NewNullLogger()
	}
	h := sha256.New()
	for _, part := range []string{strconv.Itoa(int(creds.mode())), cfg.AuthBaseURL, creds.Email, creds.Password, creds.ClientID, creds.ClientSecret} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Sum(c.key[:0])
	return c, nil
}

// Config is the resolved configuration.
func (c *Client) Config() Config { return c.cfg }

// bearerMode reports whether the client uses a given access token.
func (c *Client) bearerMode() bool { return c.creds.mode() == modeBearer }

// TokenCache keeps the tokens a Client obtains (REST login, client
// credentials), keyed by auth URL and credentials (a hash: the cache holds
// no password or secret), so that many calls share one login.
// It is safe for concurrent use.
type TokenCache struct {
	mu      sync.Mutex
	entries map[[32]byte]*cacheEntry
}

type cacheEntry struct {
	mu    sync.Mutex // held while logging in, so concurrent callers log in once
	token string
}

// NewTokenCache returns an empty cache.
func NewTokenCache() *TokenCache { return &TokenCache{entries: map[[32]byte]*cacheEntry{}} }

func (tc *TokenCache) entry(key [32]byte) *cacheEntry {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	e := tc.entries[key]
	if e == nil {
		e = &cacheEntry{}
		tc.entries[key] = e
	}
	return e
}

// accessToken returns the bearer token: the given one, or the cached REST
// token, logging in when there is none.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	if c.bearerMode() {
		return c.creds.AccessToken, nil
	}
	e := c.cache.entry(c.key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token != "" {
		return e.token, nil
	}
	tok, err := c.obtainToken(ctx)
	if err != nil {
		return "", err
	}
	e.token = tok
	return tok, nil
}

// obtainToken logs in or fetches a client-credentials token.
func (c *Client) obtainToken(ctx context.Context) (string, error) {
	if c.creds.mode() == modeClientCredentials {
		return c.clientCredentialsToken(ctx)
	}
	return c.login(ctx)
}

// dropToken forgets tok if it is still the cached token (after a 401).
func (c *Client) dropToken(tok string) {
	e := c.cache.entry(c.key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token == tok {
		e.token = ""
	}
}

// Validate checks the credentials: it logs in or fetches a
// client-credentials token (and caches it); in bearer mode there is nothing
// to ask Stoa without a product, so it only checks that a token is present
// (the host's OAuth module obtained it from Stoa's token endpoint).
func (c *Client) Validate(ctx context.Context) error {
	if c.bearerMode() {
		return nil
	}
	tok, err := c.obtainToken(ctx)
	if err != nil {
		return err
	}
	e := c.cache.entry(c.key)
	e.mu.Lock()
	e.token = tok
	e.mu.Unlock()
	return nil
}

// login performs the REST login: POST {auth}/rest-auth/login/.
func (c *Client) login(ctx context.Context) (string, error) {
	const what = "login"
	body, err := json.Marshal(map[string]string{"email": c.creds.Email, "password": c.creds.Password})
	if err != nil {
		return "", sdk.Errorf(sdk.InternalError, "login: encoding the request: %v", err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	err = c.withRetry(ctx, func() error {
		req, err := http.NewRequest(http.MethodPost, c.cfg.AuthBaseURL+"/rest-auth/login/", bytes.NewReader(body))
		if err != nil {
			return &callError{code: sdk.BadRequest, msg: "login: settings.auth_base_url does not form a valid URL"}
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		resp, err := c.roundTrip(ctx, req, what)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		switch {
		case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			ce := statusError(what, resp)
			ce.code = sdk.Unauthorized
			ce.msg = fmt.Sprintf("login: Stoa rejected the email and password (HTTP %d%s)", resp.StatusCode, ce.detail)
			return ce
		case resp.StatusCode != http.StatusOK:
			return statusError(what, resp)
		}
		return decodeJSON(what, resp, &out)
	})
	if err != nil {
		return "", c.final(ctx, err)
	}
	if out.AccessToken == "" {
		return "", sdk.Errorf(sdk.InvalidResponse, "login: Stoa's answer has no access_token")
	}
	return out.AccessToken, nil
}

// getJSON performs an authenticated API GET and decodes the JSON answer into
// out. In REST mode a 401 drops the cached token, logs in again and retries
// once.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, what string, out any) error {
	relogged := false
	for {
		tok, err := c.accessToken(ctx)
		if err != nil {
			return err
		}
		err = c.withRetry(ctx, func() error {
			req, err := http.NewRequest(http.MethodGet, c.cfg.APIBaseURL+path+"?"+q.Encode(), nil)
			if err != nil {
				return &callError{code: sdk.BadRequest, msg: what + ": settings.api_base_url does not form a valid URL"}
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Accept", "application/json")
			resp, err := c.roundTrip(ctx, req, what)
			if err != nil {
				return err
			}
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != http.StatusOK {
				return statusError(what, resp)
			}
			return decodeJSON(what, resp, out)
		})
		var ce *callError
		if errors.As(err, &ce) && ce.status == http.StatusUnauthorized {
			if !c.bearerMode() && !relogged {
				c.dropToken(tok)
				relogged = true
				continue
			}
			ce.msg = what + ": Stoa rejected the access token (HTTP 401)"
			if relogged {
				ce.msg += " even after a fresh login"
			}
		}
		if err != nil {
			return c.final(ctx, err)
		}
		return nil
	}
}

// maxJSONBytes bounds API answers.
const maxJSONBytes = 32 << 20

func decodeJSON(what string, resp *http.Response, out any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBytes+1))
	if err != nil {
		return transportError(what, err)
	}
	if len(b) > maxJSONBytes {
		return &callError{code: sdk.InvalidResponse, msg: fmt.Sprintf("%s: Stoa's answer exceeds %d bytes", what, maxJSONBytes)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &callError{code: sdk.InvalidResponse, msg: fmt.Sprintf("%s: Stoa's answer is not the expected JSON: %v", what, err)}
	}
	return nil
}

// callError is the outcome of a failed attempt.
type callError struct {
	code       sdk.Code
	msg        string
	detail     string // ": <upstream detail>" or ""
	status     int    // HTTP status, 0 for transport errors
	retryable  bool
	retryAfter time.Duration // from Retry-After; 0 = use backoff
	cause      error
}

func (e *callError) Error() string { return e.msg }
func (e *callError) Unwrap() error { return e.cause }

// retryableStatus lists the statuses worth another try.
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// statusError describes a non-2xx answer with the SPEC's default code,
// quoting a short upstream detail.
func statusError(what string, resp *http.Response) *callError {
	ce := &callError{
		code:      sdk.CodeForHTTPStatus(resp.StatusCode),
		status:    resp.StatusCode,
		retryable: retryableStatus(resp.StatusCode),
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		ce.retryAfter = d
	}
	ce.detail = upstreamDetail(resp)
	ce.msg = fmt.Sprintf("%s: Stoa answered HTTP %d%s", what, resp.StatusCode, ce.detail)
	return ce
}

// upstreamDetail extracts a short, printable reason from an error body: the
// "detail"/"error"/"message" of a JSON body, or an S3 <Message>.
func upstreamDetail(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var j map[string]any
	if json.Unmarshal(b, &j) == nil {
		for _, k := range []string{"detail", "error_description", "error", "message", "non_field_errors"} {
			if v, ok := j[k]; ok {
				return ": " + clip(fmt.Sprint(v))
			}
		}
		return ""
	}
	s := string(b)
	if i := strings.Index(s, "<Message>"); i >= 0 {
		s = s[i+len("<Message>"):]
		if j := strings.Index(s, "</Message>"); j >= 0 {
			return ": " + clip(s[:j])
		}
	}
	return ""
}

func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// errIdleTimeout is the cancellation cause of a request that saw no
// progress for the configured timeout.
var errIdleTimeout = errors.New("no progress within timeout_s")

// roundTrip sends req once. The time to the response headers, and every
// pause while reading the body, is bounded by the configured timeout.
func (c *Client) roundTrip(ctx context.Context, req *http.Request, what string) (*http.Response, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(c.cfg.Timeout, func() { cancel(errIdleTimeout) })
	resp, err := c.http.Do(req.WithContext(rctx))
	if err != nil {
		timer.Stop()
		if ctx.Err() != nil {
			cancel(nil)
			return nil, ctx.Err()
		}
		if errors.Is(context.Cause(rctx), errIdleTimeout) {
			err = errIdleTimeout
		}
		cancel(nil)
		return nil, transportError(what, err)
	}
	resp.Body = &idleBody{rc: resp.Body, timer: timer, d: c.cfg.Timeout, ctx: rctx, cancel: cancel}
	return resp, nil
}

// idleBody restarts the idle timer on every read.
type idleBody struct {
	rc     io.ReadCloser
	timer  *time.Timer
	d      time.Duration
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.d)
	}
	if err != nil && !errors.Is(err, io.EOF) && errors.Is(context.Cause(b.ctx), errIdleTimeout) {
		err = errIdleTimeout
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// transportError classifies a failure to talk to Stoa. The message never
// includes the URL (a presigned URL is a credential).
func transportError(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	ce := &callError{code: sdk.ClientCallError, retryable: true, cause: err}
	var ne net.Error
	switch {
	case errors.Is(err, errIdleTimeout):
		ce.code = sdk.RequestTimeout
		ce.msg = fmt.Sprintf("%s: Stoa made no progress within timeout_s", what)
		return ce
	case errors.Is(err, syscall.ECONNREFUSED):
		ce.code = sdk.ConnectionRejected
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
		ce.code = sdk.ConnectionClosed
	case errors.As(err, &ne) && ne.Timeout():
		ce.code = sdk.ConnectionTimeout
	}
	ce.msg = fmt.Sprintf("%s: %v", what, err)
	return ce
}

// withRetry runs fn until it succeeds, fails with a non-retryable error, or
// the attempts are used up, sleeping between tries with jittered
// exponential backoff or the server's Retry-After.
func (c *Client) withRetry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = fn()
		var ce *callError
		if err == nil || !errors.As(err, &ce) || !ce.retryable || attempt >= c.retry.Attempts {
			return err
		}
		if ce.retryAfter > c.retry.MaxRetryAfter {
			ce.retryable = false
			ce.msg += fmt.Sprintf(" (Retry-After %s exceeds the %s the client waits)", ce.retryAfter, c.retry.MaxRetryAfter)
			return ce
		}
		pause := c.backoff(attempt, ce.retryAfter)
		c.logRetry(ce, attempt, pause)
		if err := sleep(ctx, pause); err != nil {
			return err
		}
	}
}

// logRetry logs a failed try that will be retried after pause. The message
// is the error's, which names what failed but holds no secret and no URL.
func (c *Client) logRetry(ce *callError, attempt int, pause time.Duration) {
	c.opts.Logger.Info("stoa request failed; retrying", "error_code", string(ce.code), "error", ce.msg,
		"attempt", attempt, "attempts", c.retry.Attempts, "pause", pause.Round(time.Millisecond).String())
}

// backoff is the pause after try attempt (1-based).
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter
	}
	d := c.retry.BaseDelay << min(attempt-1, 20)
	if d <= 0 || d > c.retry.MaxDelay {
		d = c.retry.MaxDelay
	}
	return d/2 + rand.N(d/2+1) //nolint:gosec // retry jitter, not a secret
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// final converts an attempt error to the *sdk.Error the caller gets.
func (c *Client) final(ctx context.Context, err error) error {
	var se *sdk.Error
	if errors.As(err, &se) {
		return se
	}
	var ce *callError
	if errors.As(err, &ce) {
		e := sdk.Errorf(ce.code, "%s", ce.msg)
		e.Retryable = ce.retryable
		e.Err = ce.cause
		return e
	}
	if ctx.Err() != nil {
		e := sdk.Errorf(sdk.RequestTimeout, "cancelled: %v", ctx.Err())
		e.Err = ctx.Err()
		return e
	}
	return sdk.Errorf(sdk.UnexpectedError, "%v", err)
}
