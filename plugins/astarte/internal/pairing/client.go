package pairing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxResponse bounds a Pairing API response body.
const maxResponse = 1 << 20

// Client calls the Astarte Pairing API. Bodies are JSON wrapped in
// {"data": ...}; errors come back as {"errors": {"detail": ...}}.
type Client struct {
	base *url.URL
	http *http.Client
}

// NewClient returns a client for the Pairing API at baseURL (e.g.
// "https://api.example.com/pairing"). A nil httpClient uses one with a 30 s
// timeout.
func NewClient(baseURL string, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pairing_base_url %q: want an http(s) URL such as https://api.example.com/pairing", clip(baseURL))
	}
	if u.User != nil {
		return nil, errors.New("pairing_base_url: must not contain credentials")
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: u, http: httpClient}, nil
}

// APIError is a Pairing API reply with an error status. It never holds the
// JWT or credentials secret that were sent.
type APIError struct {
	// Op is the call, e.g. "register".
	Op string
	// Status is the HTTP status code.
	Status int
	// Detail is errors.detail from the reply, when there is one.
	Detail string
}

// Error implements error.
func (e *APIError) Error() string {
	msg := fmt.Sprintf("pairing %s: HTTP %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// IntrospectionVersion is one entry of initial_introspection.
type IntrospectionVersion struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
}

// Register registers deviceID in realm with a Pairing API JWT and returns the
// credentials secret. introspection may be nil.
func (c *Client) Register(ctx context.Context, realm, deviceID, token string, introspection map[string]IntrospectionVersion) (string, error) {
	if err := validateIDs(realm, deviceID); err != nil {
		return "", err
	}
	if token == "" {
		return "", errors.New("pairing register: a JWT is required")
	}
	body := map[string]any{"hw_id": deviceID}
	if len(introspection) > 0 {
		body["initial_introspection"] = introspection
	}
	var out struct {
		CredentialsSecret string `json:"credentials_secret"`
	}
	if err := c.do(ctx, "register", http.MethodPost, []string{"v1", realm, "agent", "devices"}, token, body, &out); err != nil {
		return "", err
	}
	if out.CredentialsSecret == "" {
		return "", errors.New("pairing register: reply has no credentials_secret")
	}
	return out.CredentialsSecret, nil
}

// DeviceInfo is the reply of the device info call.
type DeviceInfo struct {
	Version   string                     `json:"version"`
	Status    string                     `json:"status"`
	Protocols map[string]json.RawMessage `json:"protocols"`
	// BrokerURL is protocols.astarte_mqtt_v1.broker_url.
	BrokerURL string `json:"-"`
}

// Info returns the device status and transport information (broker URL).
func (c *Client) Info(ctx context.Context, realm, deviceID, secret string) (*DeviceInfo, error) {
	if err := validateIDs(realm, deviceID); err != nil {
		return nil, err
	}
	var out DeviceInfo
	if err := c.do(ctx, "info", http.MethodGet, []string{"v1", realm, "devices", deviceID}, secret, nil, &out); err != nil {
		return nil, err
	}
	if raw, ok := out.Protocols["astarte_mqtt_v1"]; ok {
		var mq struct {
			BrokerURL string `json:"broker_url"`
		}
		if err := json.Unmarshal(raw, &mq); err != nil {
			return nil, fmt.Errorf("pairing info: protocols.astarte_mqtt_v1 is not an object: %w", err)
		}
		out.BrokerURL = mq.BrokerURL
	}
	return &out, nil
}

// ObtainCertificate sends a CSR and returns the signed PEM certificate.
func (c *Client) ObtainCertificate(ctx context.Context, realm, deviceID, secret string, csrPEM []byte) ([]byte, error) {
	if err := validateIDs(realm, deviceID); err != nil {
		return nil, err
	}
	var out struct {
		ClientCrt string `json:"client_crt"`
	}
	path := []string{"v1", realm, "devices", deviceID, "protocols", "astarte_mqtt_v1", "credentials"}
	if err := c.do(ctx, "credentials", http.MethodPost, path, secret, map[string]string{"csr": string(csrPEM)}, &out); err != nil {
		return nil, err
	}
	if _, err := ParseCertificate([]byte(out.ClientCrt)); err != nil {
		return nil, fmt.Errorf("pairing credentials: reply client_crt: %w", err)
	}
	return []byte(out.ClientCrt), nil
}

// Verification is the reply of the certificate verify call.
type Verification struct {
	Valid     bool      `json:"valid"`
	Timestamp time.Time `json:"timestamp"`
	Until     time.Time `json:"until"`
	Cause     string    `json:"cause"`
	Details   string    `json:"details"`
}

// VerifyCertificate asks Astarte whether certPEM is a valid certificate for
// the device.
func (c *Client) VerifyCertificate(ctx context.Context, realm, deviceID, secret string, certPEM []byte) (*Verification, error) {
	if err := validateIDs(realm, deviceID); err != nil {
		return nil, err
	}
	var raw struct {
		Valid     bool   `json:"valid"`
		Timestamp string `json:"timestamp"`
		Until     string `json:"until"`
		Cause     string `json:"cause"`
		Details   string `json:"details"`
	}
	path := []string{"v1", realm, "devices", deviceID, "protocols", "astarte_mqtt_v1", "credentials", "verify"}
	if err := c.do(ctx, "verify", http.MethodPost, path, secret, map[string]string{"client_crt": string(certPEM)}, &raw); err != nil {
		return nil, err
	}
	v := &Verification{Valid: raw.Valid, Cause: raw.Cause, Details: raw.Details}
	v.Timestamp, _ = time.Parse(time.RFC3339Nano, raw.Timestamp)
	v.Until, _ = time.Parse(time.RFC3339Nano, raw.Until)
	return v, nil
}

func validateIDs(realm, deviceID string) error {
	if err := ValidateRealm(realm); err != nil {
		return err
	}
	return ValidateDeviceID(deviceID)
}

// do sends one call. bearer is the JWT or credentials secret; it goes only in
// the Authorization header.
func (c *Client) do(ctx context.Context, op, method string, segments []string, bearer string, in, out any) error {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/" + strings.Join(segments, "/")
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(map[string]any{"data": in})
		if err != nil {
			return fmt.Errorf("pairing %s: %w", op, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("pairing %s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("pairing %s: %w", op, redactURLError(err))
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("pairing %s: reading reply: %w", op, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("pairing %s: reply larger than %d bytes", op, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Errors json.RawMessage `json:"errors"`
		}
		apiErr := &APIError{Op: op, Status: resp.StatusCode}
		if json.Unmarshal(data, &e) == nil && len(e.Errors) > 0 {
			var d struct {
				Detail string `json:"detail"`
			}
			if json.Unmarshal(e.Errors, &d) == nil && d.Detail != "" {
				apiErr.Detail = clipN(d.Detail, 200)
			} else {
				apiErr.Detail = clipN(string(e.Errors), 200)
			}
		}
		return apiErr
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &env); err != nil || len(env.Data) == 0 || string(env.Data) == "null" {
		return fmt.Errorf("pairing %s: reply is not {\"data\": ...}", op)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("pairing %s: reply data: %w", op, err)
	}
	return nil
}

// redactURLError drops the URL from a transport error (it holds no secret,
// but keeps messages short and stable).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
