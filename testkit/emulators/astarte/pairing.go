package astarteemu

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// deviceRecord is what the Pairing API knows about a device.
type deviceRecord struct {
	secret        string
	introspection json.RawMessage
	// credentialsIssued is set once a certificate was issued: registering
	// the device again is then refused (422).
	credentialsIssued bool
	certificates      int
}

var deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// pairingHandler serves the Pairing API under /pairing.
func (e *Emulator) pairingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pairing/v1/{realm}/agent/devices", e.handleRegister)
	mux.HandleFunc("GET /pairing/v1/{realm}/devices/{id}", e.handleInfo)
	mux.HandleFunc("POST /pairing/v1/{realm}/devices/{id}/protocols/astarte_mqtt_v1/credentials", e.handleCredentials)
	mux.HandleFunc("POST /pairing/v1/{realm}/devices/{id}/protocols/astarte_mqtt_v1/credentials/verify", e.handleVerify)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not found")
	})
	return mux
}

func writeError(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": map[string]string{"detail": detail}})
}

func writeData(w http.ResponseWriter, status int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// readData decodes a {"data": {...}} body into out.
func readData(r *http.Request, out any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Data) == 0 {
		return errors.New(`body must be {"data": {...}}`)
	}
	return json.Unmarshal(env.Data, out)
}

// checkJWT verifies the bearer token against the realm public key and the
// a_pa claim against method and path (relative to the realm). It returns the
// HTTP status to reply with (0 when allowed).
func (e *Emulator) checkJWT(r *http.Request, relPath string) (int, string) {
	tok := bearer(r)
	if tok == "" {
		return http.StatusUnauthorized, "Missing authorization token"
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		return e.realmPub, nil
	}, jwt.WithValidMethods([]string{"ES256", "ES384", "RS256"}), jwt.WithExpirationRequired())
	if err != nil {
		return http.StatusUnauthorized, "Invalid JWT token"
	}
	rawList, _ := claims["a_pa"].([]any)
	for _, it := range rawList {
		s, _ := it.(string)
		method, path, ok := strings.Cut(s, "::")
		if !ok {
			continue
		}
		mre, err1 := regexp.Compile("^(?:" + method + ")$")
		pre, err2 := regexp.Compile("^(?:" + path + ")$")
		if err1 == nil && err2 == nil && mre.MatchString(r.Method) && pre.MatchString(relPath) {
			return 0, ""
		}
	}
	return http.StatusForbidden, "Unauthorized access to " + r.Method + " " + relPath
}

func (e *Emulator) handleRegister(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("realm") != e.realm {
		writeError(w, http.StatusNotFound, "Realm not found")
		return
	}
	if status, detail := e.checkJWT(r, "agent/devices"); status != 0 {
		writeError(w, status, detail)
		return
	}
	var in struct {
		HwID                 string          `json:"hw_id"`
		InitialIntrospection json.RawMessage `json:"initial_introspection"`
	}
	if err := readData(r, &in); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if raw, err := base64.RawURLEncoding.DecodeString(in.HwID); !deviceIDRE.MatchString(in.HwID) || err != nil || len(raw) != 16 {
		writeError(w, http.StatusUnprocessableEntity, "hw_id: invalid device id")
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if d := e.devices[in.HwID]; d != nil && d.credentialsIssued {
		writeError(w, http.StatusUnprocessableEntity, "Device already registered")
		return
	}
	secret := newSecret()
	e.devices[in.HwID] = &deviceRecord{secret: secret, introspection: in.InitialIntrospection}
	writeData(w, http.StatusCreated, map[string]string{"credentials_secret": secret})
}

// authDevice checks the credentials secret of the device in the path.
func (e *Emulator) authDevice(w http.ResponseWriter, r *http.Request) (*deviceRecord, string, bool) {
	if r.PathValue("realm") != e.realm {
		writeError(w, http.StatusNotFound, "Realm not found")
		return nil, "", false
	}
	secret := bearer(r)
	if secret == "" {
		writeError(w, http.StatusUnauthorized, "Missing credentials secret")
		return nil, "", false
	}
	id := r.PathValue("id")
	e.mu.Lock()
	d := e.devices[id]
	e.mu.Unlock()
	if d == nil || d.secret != secret {
		writeError(w, http.StatusForbidden, "Invalid credentials secret")
		return nil, "", false
	}
	return d, id, true
}

func (e *Emulator) handleInfo(w http.ResponseWriter, r *http.Request) {
	d, _, ok := e.authDevice(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	status := "pending"
	if d.credentialsIssued {
		status = "confirmed"
	}
	e.mu.Unlock()
	writeData(w, http.StatusOK, map[string]any{
		"version": "1.2.0",
		"status":  status,
		"protocols": map[string]any{
			"astarte_mqtt_v1": map[string]string{"broker_url": e.BrokerURL()},
		},
	})
}

func (e *Emulator) handleCredentials(w http.ResponseWriter, r *http.Request) {
	d, id, ok := e.authDevice(w, r)
	if !ok {
		return
	}
	var in struct {
		CSR string `json:"csr"`
	}
	if err := readData(r, &in); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	block, _ := pem.Decode([]byte(in.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		writeError(w, http.StatusUnprocessableEntity, "csr: not a PEM certificate request")
		return
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		writeError(w, http.StatusUnprocessableEntity, "csr: invalid certificate request")
		return
	}
	now := time.Now()
	e.mu.Lock()
	validity := e.certValidity
	e.mu.Unlock()
	// The subject is forced to realm/device_id whatever the CSR says.
	der, err := e.pki.clientCert(e.realm+"/"+id, csr.PublicKey, now.Add(-time.Minute), now.Add(validity))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot sign certificate")
		return
	}
	e.mu.Lock()
	d.credentialsIssued = true
	d.certificates++
	e.mu.Unlock()
	writeData(w, http.StatusCreated, map[string]string{
		"client_crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	})
}

func (e *Emulator) handleVerify(w http.ResponseWriter, r *http.Request) {
	_, id, ok := e.authDevice(w, r)
	if !ok {
		return
	}
	var in struct {
		ClientCrt string `json:"client_crt"`
	}
	if err := readData(r, &in); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	now := time.Now().UTC()
	invalid := func(cause, details string) {
		writeData(w, http.StatusOK, map[string]any{"valid": false, "timestamp": now.Format(time.RFC3339Nano), "cause": cause, "details": details})
	}
	block, _ := pem.Decode([]byte(in.ClientCrt))
	if block == nil || block.Type != "CERTIFICATE" {
		invalid("INVALID_ENCODING", "not a PEM certificate")
		return
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		invalid("INVALID_ENCODING", "not a certificate")
		return
	}
	if cause, err := e.pki.verify(cert, now); err != nil {
		invalid(cause, err.Error())
		return
	}
	if cert.Subject.CommonName != e.realm+"/"+id {
		invalid("INVALID_SUBJECT", fmt.Sprintf("certificate CN %q is not %s/%s", cert.Subject.CommonName, e.realm, id))
		return
	}
	writeData(w, http.StatusOK, map[string]any{"valid": true, "timestamp": now.Format(time.RFC3339Nano),
		"until": cert.NotAfter.UTC().Format(time.RFC3339Nano)})
}

func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
