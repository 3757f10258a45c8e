package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/connector-host/connector-host/plugins/astarte/internal/device"
	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/msghub"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/sdk"
)

// DeviceRequest names a device.
type DeviceRequest struct {
	DeviceID string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$,description=Astarte device id (22 characters of base64url)"`
}

// GenerateDeviceIDRequest is the request of generate_device_id.
type GenerateDeviceIDRequest struct {
	Namespace string `json:"namespace,omitempty" jsonschema:"description=UUID namespace: with data the id is UUIDv5(namespace\\, data); without data a random UUIDv4"`
	Data      string `json:"data,omitempty" jsonschema:"description=Unique device data (e.g. a serial number) for UUIDv5"`
}

// DeviceIDResponse carries a device id.
type DeviceIDResponse struct {
	DeviceID string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{21}[AQgw]$,description=128 bits as 22 characters of base64url without padding"`
}

// RegisterRequest is the request of register_device.
type RegisterRequest struct {
	DeviceID string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	// RealmPrivateKey signs a short-lived registration JWT when no JWT is
	// given in auth.jwt.
	RealmPrivateKey sdk.Secret `json:"realm_private_key,omitempty" jsonschema:"description=Realm private key (PEM) to sign a short-lived registration JWT when auth.jwt is not given"`
	// RealmPrivateKeyFile is the same, read from a file.
	RealmPrivateKeyFile string `json:"realm_private_key_file,omitempty" jsonschema:"description=File holding the realm private key (PEM)"`
	// InitialIntrospection sends the device's current interfaces.
	InitialIntrospection bool `json:"initial_introspection,omitempty" jsonschema:"description=Send the device's interfaces as initial_introspection"`
}

// RegisterResponse is the response of register_device. The credentials
// secret is stored in the plugin's data dir and never returned.
type RegisterResponse struct {
	DeviceID          string `json:"device_id"`
	CredentialsStored bool   `json:"credentials_stored"`
}

// CertificateResponse describes the stored certificate.
type CertificateResponse struct {
	DeviceID  string    `json:"device_id"`
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// ImportSecretRequest is the request of import_credentials_secret.
type ImportSecretRequest struct {
	DeviceID string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	// CredentialsSecret is the secret Astarte gave when the device was
	// registered elsewhere (astartectl, the dashboard, the Pairing API).
	CredentialsSecret sdk.Secret `json:"credentials_secret" jsonschema:"minLength=1,description=The device's credentials secret from a registration made elsewhere (astartectl\\, dashboard)"`
}

// ImportSecretResponse is the response of import_credentials_secret.
type ImportSecretResponse struct {
	DeviceID          string `json:"device_id"`
	CredentialsStored bool   `json:"credentials_stored"`
}

// CSRResponse is the response of generate_device_csr.
type CSRResponse struct {
	DeviceID string `json:"device_id"`
	// CSR is the PEM certificate signing request (public).
	CSR string `json:"csr" jsonschema:"description=PEM certificate signing request: EC P-256 device key\\, subject O=Devices\\, CN=realm/device_id"`
}

// ImportCertificateRequest is the request of import_device_certificate.
type ImportCertificateRequest struct {
	DeviceID string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	// ClientCrt is the PEM certificate signed for the device key.
	ClientCrt string `json:"client_crt" jsonschema:"minLength=1,description=PEM client certificate issued for the device key (e.g. from the CSR of generate_device_csr)"`
}

// HasCertificateResponse is the response of device_has_certificate.
type HasCertificateResponse struct {
	HasCertificate bool `json:"has_certificate"`
}

// CertificateValidRequest is the request of certificate_is_valid.
type CertificateValidRequest struct {
	DeviceID string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	// Remote also asks Astarte (credentials/verify).
	Remote bool `json:"remote,omitempty" jsonschema:"description=Also ask Astarte to verify the certificate"`
}

// CertificateValidResponse is the response of certificate_is_valid.
type CertificateValidResponse struct {
	Valid  bool   `json:"valid"`
	Reason string `json:"reason,omitempty"`
}

// TransportInfoResponse is the response of get_transport_info.
type TransportInfoResponse struct {
	Version   string                     `json:"version"`
	Status    string                     `json:"status"`
	BrokerURL string                     `json:"broker_url"`
	Protocols map[string]json.RawMessage `json:"protocols"`
}

// AddInterfaceRequest is the request of add_interface.
type AddInterfaceRequest struct {
	DeviceID  string         `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Interface map[string]any `json:"interface,omitempty" jsonschema:"description=The interface definition (JSON object)"`
	File      string         `json:"file,omitempty" jsonschema:"description=Path of an interface JSON file (instead of interface)"`
}

// InterfaceInfo summarises an interface.
type InterfaceInfo struct {
	Name        string                 `json:"interface_name"`
	Major       int                    `json:"version_major"`
	Minor       int                    `json:"version_minor"`
	Type        interfaces.Type        `json:"type"`
	Ownership   interfaces.Ownership   `json:"ownership"`
	Aggregation interfaces.Aggregation `json:"aggregation"`
	Mappings    int                    `json:"mappings"`
}

// RemoveInterfaceRequest is the request of remove_interface.
type RemoveInterfaceRequest struct {
	DeviceID      string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	InterfaceName string `json:"interface_name" jsonschema:"minLength=1"`
}

// ListInterfacesResponse is the response of list_interfaces.
type ListInterfacesResponse struct {
	Interfaces    []InterfaceInfo `json:"interfaces"`
	Introspection string          `json:"introspection"`
}

// ConnectRequest is the request of connect.
type ConnectRequest struct {
	DeviceID  string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Transport string `json:"transport,omitempty" jsonschema:"enum=mqtt,enum=grpc,description=Transport: mqtt (default: Astarte MQTT v1 over TLS) or grpc (a node of a local Astarte Message Hub; no pairing)"`
	// MsghubAddress is the Message Hub of the grpc transport.
	MsghubAddress string `json:"msghub_address,omitempty" jsonschema:"description=grpc: the Message Hub host:port (default 127.0.0.1:50051)"`
	// NodeID is the device's node id on the hub.
	NodeID string `json:"node_id,omitempty" jsonschema:"description=grpc: the node id (a UUID); when absent the device's saved one\\, else a new one (saved)"`
	// Wait waits until the device is connected and its offline queues are
	// delivered (or TimeoutMS passes).
	Wait      bool `json:"wait,omitempty" jsonschema:"description=Wait until connected and the offline queues are delivered"`
	TimeoutMS int  `json:"timeout_ms,omitempty" jsonschema:"minimum=0,maximum=600000,description=How long wait waits (default 30000)"`
}

// SendRequest is the request of send and send_aggregate.
type SendRequest struct {
	DeviceID  string     `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Interface string     `json:"interface" jsonschema:"minLength=1"`
	Path      string     `json:"path" jsonschema:"minLength=1,description=Concrete path; for send_aggregate the object's base path"`
	Value     jsonValue  `json:"value" jsonschema:"description=The value (send_aggregate: an object keyed by the last endpoint segment). longinteger may be a string; binaryblob base64; datetime RFC 3339."`
	Timestamp *time.Time `json:"timestamp,omitempty" jsonschema:"description=Explicit timestamp (required when the mapping has explicit_timestamp)"`
}

// SendBatchRequest is the request of send_batch.
type SendBatchRequest struct {
	DeviceID string         `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Messages []BatchMessage `json:"messages" jsonschema:"minItems=1,maxItems=10000,description=Datastream messages (1 to 10000): all are validated first and an invalid one refuses the whole batch; order is kept per interface and path"`
}

// BatchMessage is one message of send_batch: value on an individual
// interface, values on an object-aggregated one.
type BatchMessage struct {
	Interface string `json:"interface" jsonschema:"minLength=1"`
	Path      string `json:"path" jsonschema:"minLength=1,description=Concrete path; on an object-aggregated interface the object's base path"`
	// Value is the value on an individual interface.
	Value *jsonValue `json:"value,omitempty" jsonschema:"description=The value on an individual interface. longinteger may be a string; binaryblob base64; datetime RFC 3339."`
	// Values is the object on an object-aggregated interface.
	Values    map[string]jsonValue `json:"values,omitempty" jsonschema:"description=The object on an object-aggregated interface\\, keyed by the last endpoint segment"`
	Timestamp *time.Time           `json:"timestamp,omitempty" jsonschema:"description=Explicit timestamp (required when the mapping has explicit_timestamp)"`
}

// SendBatchResponse is the response of send_batch: one result per message,
// in order, and the counts of each outcome.
type SendBatchResponse struct {
	Results        []BatchResult `json:"results"`
	Delivered      int           `json:"delivered"`
	QueuedStored   int           `json:"queued_stored"`
	QueuedVolatile int           `json:"queued_volatile"`
	Failed         int           `json:"failed"`
}

// BatchResult is the outcome of one message of send_batch.
type BatchResult struct {
	Index    int             `json:"index"`
	OK       bool            `json:"ok"`
	Delivery device.Delivery `json:"delivery,omitempty" jsonschema:"enum=delivered,enum=queued_stored,enum=queued_volatile"`
	Error    *BatchError     `json:"error,omitempty"`
}

// BatchError is why one message of send_batch failed.
type BatchError struct {
	Code      sdk.Code `json:"code"`
	Message   string   `json:"message"`
	Retryable bool     `json:"retryable,omitempty"`
}

// PropertyRequest is the request of set_property.
type PropertyRequest struct {
	DeviceID  string    `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Interface string    `json:"interface" jsonschema:"minLength=1"`
	Path      string    `json:"path" jsonschema:"minLength=1"`
	Value     jsonValue `json:"value"`
}

// PropertyPathRequest is the request of unset_property and get_property.
type PropertyPathRequest struct {
	DeviceID  string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Interface string `json:"interface" jsonschema:"minLength=1"`
	Path      string `json:"path" jsonschema:"minLength=1"`
}

// StatusResponse is a device's state and counters, with its Message Hub
// node id and address when it has them.
type StatusResponse struct {
	device.Status
	HubInfo
}

// DeliveryResponse says what happened to a message.
type DeliveryResponse struct {
	Delivery device.Delivery `json:"delivery"`
}

// GetPropertyResponse is the response of get_property.
type GetPropertyResponse struct {
	Set   bool `json:"set"`
	Value any  `json:"value"`
}

// ListPropertiesRequest is the request of list_properties.
type ListPropertiesRequest struct {
	DeviceID  string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	Interface string `json:"interface,omitempty" jsonschema:"description=Only this interface"`
}

// ListPropertiesResponse is the response of list_properties.
type ListPropertiesResponse struct {
	Properties []device.PropertyValue `json:"properties"`
}

// SubscribeRequest is the request of subscribe.
type SubscribeRequest struct {
	DeviceID string `json:"device_id" jsonschema:"pattern=^[A-Za-z0-9_-]{22}$"`
	// Types filters the events (default all).
	Types     []string `json:"types,omitempty" jsonschema:"description=Event types to receive (connected\\, disconnected\\, data_received\\, property_unset\\, hub_error); default all"`
	MaxEvents int      `json:"max_events,omitempty" jsonschema:"minimum=0,description=End the stream after this many events (0: no limit)"`
	TimeoutMS int      `json:"timeout_ms,omitempty" jsonschema:"minimum=0,description=End the stream after this long (0: when the caller goes away)"`
}

func register(integ *sdk.Integration, p *plugin) {
	sdk.Register(integ, "generate_device_id", p.generateDeviceID, sdk.WithDescription("A device id: UUIDv5 of namespace and data, or a random UUIDv4"))
	sdk.Register(integ, "register_device", p.registerDevice, sdk.WithDescription("Register a device with the Pairing API (JWT in auth.jwt, or signed with the realm private key); the credentials secret is stored"))
	sdk.Register(integ, "obtain_device_certificate", p.obtainCertificate, sdk.WithDescription("Create the device key if needed, send a CSR and store the certificate"))
	sdk.Register(integ, "import_credentials_secret", p.importSecret, sdk.WithDescription("Store the credentials secret of a device registered elsewhere (astartectl, dashboard), as register_device would"))
	sdk.Register(integ, "generate_device_csr", p.generateCSR, sdk.WithDescription("Create the device key if needed and return a CSR for it (to have the certificate issued elsewhere)"))
	sdk.Register(integ, "import_device_certificate", p.importCertificate, sdk.WithDescription("Store a certificate issued elsewhere for the device key, after checking its key, subject and validity period"))
	sdk.Register(integ, "verify_device_certificate", p.verifyCertificate, sdk.WithDescription("Ask Astarte to verify the stored certificate"))
	sdk.Register(integ, "device_has_certificate", p.hasCertificate, sdk.WithDescription("Whether a certificate is stored for the device"))
	sdk.Register(integ, "certificate_is_valid", p.certificateIsValid, sdk.WithDescription("Check the stored certificate locally (validity period, key match), optionally also with Astarte"))
	sdk.Register(integ, "get_transport_info", p.transportInfo, sdk.WithDescription("Device status and transport information (broker URL) from the Pairing API"))
	sdk.Register(integ, "add_interface", p.addInterface, sdk.WithDescription("Add an interface (JSON object or file) to the device"))
	sdk.Register(integ, "remove_interface", p.removeInterface, sdk.WithDescription("Remove an interface and its stored properties"))
	sdk.Register(integ, "list_interfaces", p.listInterfaces, sdk.WithDescription("The device's interfaces and introspection"))
	sdk.Register(integ, "connect", p.connectCap, sdk.WithDescription("Connect the device (MQTT v1 over TLS, or grpc: attach to a Message Hub); it reconnects by itself until disconnect"))
	sdk.Register(integ, "disconnect", p.disconnect, sdk.WithDescription("Disconnect the device and stop reconnecting"))
	sdk.Register(integ, "status", p.status, sdk.WithDescription("Connection state, queues and counters"))
	sdk.Register(integ, "send", p.send, sdk.WithDescription("Send a value on an individual datastream"))
	sdk.Register(integ, "send_aggregate", p.sendAggregate, sdk.WithDescription("Send an object on an object-aggregated datastream"))
	sdk.Register(integ, "send_batch", p.sendBatch, sdk.WithDescription("Send up to 10000 datastream messages in one call: all validated first, then sent pipelined (order kept per interface and path) or queued by retention; one result per message"))
	sdk.Register(integ, "set_property", p.setProperty, sdk.WithDescription("Set a device-owned property"))
	sdk.Register(integ, "unset_property", p.unsetProperty, sdk.WithDescription("Unset a device-owned property (allow_unset)"))
	sdk.Register(integ, "get_property", p.getProperty, sdk.WithDescription("A stored property value"))
	sdk.Register(integ, "list_properties", p.listProperties, sdk.WithDescription("The stored properties"))
	sdk.RegisterStream(integ, "subscribe", p.subscribe, sdk.WithDescription("Stream the device's events: connected, disconnected, data_received, property_unset, hub_error"))
}

func (p *plugin) generateDeviceID(_ context.Context, req sdk.Request[GenerateDeviceIDRequest]) (DeviceIDResponse, error) {
	a := req.Args
	if a.Namespace == "" && a.Data == "" {
		id, err := pairing.NewDeviceID()
		return DeviceIDResponse{DeviceID: id}, err
	}
	if a.Namespace == "" || a.Data == "" {
		return DeviceIDResponse{}, sdk.NewError(sdk.BadRequest, "request: namespace and data go together (or give neither for a random id)")
	}
	ns, err := uuid.Parse(a.Namespace)
	if err != nil {
		return DeviceIDResponse{}, sdk.Errorf(sdk.BadRequest, "request.namespace: not a UUID: %v", err)
	}
	return DeviceIDResponse{DeviceID: pairing.DeviceIDFromNamespace(ns, a.Data)}, nil
}

func (p *plugin) registerDevice(ctx context.Context, req sdk.Request[RegisterRequest]) (RegisterResponse, error) {
	c, err := decodeSettings(req.Envelope)
	if err != nil {
		return RegisterResponse{}, err
	}
	prov, err := p.provisioner(c)
	if err != nil {
		return RegisterResponse{}, err
	}
	a := req.Args
	if err := pairing.ValidateDeviceID(a.DeviceID); err != nil {
		return RegisterResponse{}, sdk.Errorf(sdk.BadRequest, "request.device_id: %v", err)
	}
	var token string
	switch {
	case req.Auth.JWT != nil:
		token = req.Auth.JWT.Token.Reveal()
	case a.RealmPrivateKey != "" && a.RealmPrivateKeyFile != "":
		return RegisterResponse{}, sdk.NewError(sdk.BadRequest, "request: give realm_private_key or realm_private_key_file, not both")
	case a.RealmPrivateKey != "" || a.RealmPrivateKeyFile != "":
		key, field := []byte(a.RealmPrivateKey.Reveal()), "request.realm_private_key"
		if a.RealmPrivateKeyFile != "" {
			if key, err = readKeyFile(a.RealmPrivateKeyFile); err != nil {
				return RegisterResponse{}, err
			}
			field = "request.realm_private_key_file"
		}
		if token, err = pairing.NewRegistrationJWT(key, pairing.DefaultRegistrationTTL, time.Now()); err != nil {
			return RegisterResponse{}, sdk.Errorf(sdk.BadRequest, "%s: %v", field, err)
		}
	default:
		return RegisterResponse{}, sdk.NewError(sdk.BadRequest, "a registration JWT (auth.jwt) or the realm private key (request.realm_private_key or realm_private_key_file) is required")
	}
	var intro map[string]pairing.IntrospectionVersion
	if a.InitialIntrospection {
		d, err := p.device(ctx, c, a.DeviceID)
		if err != nil {
			return RegisterResponse{}, err
		}
		intro = map[string]pairing.IntrospectionVersion{}
		for _, i := range d.Interfaces() {
			intro[i.Name] = pairing.IntrospectionVersion{Major: i.Major, Minor: i.Minor}
		}
	}
	if err := prov.Register(ctx, a.DeviceID, token, intro); err != nil {
		return RegisterResponse{}, err
	}
	return RegisterResponse{DeviceID: a.DeviceID, CredentialsStored: true}, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := readFileLimited(path, 1<<20)
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "request.realm_private_key_file: %v", err)
	}
	return b, nil
}

func (p *plugin) deviceProvisioner(env *sdk.Envelope, id string) (*pairing.Provisioner, error) {
	c, err := decodeSettings(env)
	if err != nil {
		return nil, err
	}
	if err := pairing.ValidateDeviceID(id); err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "request.device_id: %v", err)
	}
	return p.provisioner(c)
}

func (p *plugin) obtainCertificate(ctx context.Context, req sdk.Request[DeviceRequest]) (CertificateResponse, error) {
	prov, err := p.deviceProvisioner(req.Envelope, req.Args.DeviceID)
	if err != nil {
		return CertificateResponse{}, err
	}
	if err := prov.ObtainCertificate(ctx, req.Args.DeviceID); err != nil {
		return CertificateResponse{}, err
	}
	cert, err := prov.Store.Certificate(prov.Realm, req.Args.DeviceID)
	if err != nil {
		return CertificateResponse{}, err
	}
	return CertificateResponse{DeviceID: req.Args.DeviceID, Subject: cert.Subject.String(), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC()}, nil
}

// localKeys returns the key store and realm of a call that needs no
// Pairing API.
func (p *plugin) localKeys(env *sdk.Envelope, id string) (*pairing.KeyStore, string, error) {
	c, err := decodeSettings(env)
	if err != nil {
		return nil, "", err
	}
	realm, err := c.realm()
	if err != nil {
		return nil, "", err
	}
	if err := pairing.ValidateDeviceID(id); err != nil {
		return nil, "", sdk.Errorf(sdk.BadRequest, "request.device_id: %v", err)
	}
	if _, err := p.state(); err != nil {
		return nil, "", err
	}
	return p.keys, realm, nil
}

func (p *plugin) importSecret(_ context.Context, req sdk.Request[ImportSecretRequest]) (ImportSecretResponse, error) {
	keys, realm, err := p.localKeys(req.Envelope, req.Args.DeviceID)
	if err != nil {
		return ImportSecretResponse{}, err
	}
	secret := req.Args.CredentialsSecret.Reveal()
	if strings.TrimSpace(secret) != secret || strings.ContainsAny(secret, "\r\n") {
		return ImportSecretResponse{}, sdk.NewError(sdk.BadRequest, "request.credentials_secret: must not contain white space at its ends or line breaks")
	}
	if err := keys.SaveSecret(realm, req.Args.DeviceID, secret); err != nil {
		return ImportSecretResponse{}, err
	}
	return ImportSecretResponse{DeviceID: req.Args.DeviceID, CredentialsStored: true}, nil
}

func (p *plugin) generateCSR(_ context.Context, req sdk.Request[DeviceRequest]) (CSRResponse, error) {
	keys, realm, err := p.localKeys(req.Envelope, req.Args.DeviceID)
	if err != nil {
		return CSRResponse{}, err
	}
	key, err := keys.Key(realm, req.Args.DeviceID)
	if err != nil {
		return CSRResponse{}, err
	}
	csr, err := pairing.CreateCSR(key, realm, req.Args.DeviceID)
	if err != nil {
		return CSRResponse{}, err
	}
	return CSRResponse{DeviceID: req.Args.DeviceID, CSR: string(csr)}, nil
}

func (p *plugin) importCertificate(_ context.Context, req sdk.Request[ImportCertificateRequest]) (CertificateResponse, error) {
	keys, realm, err := p.localKeys(req.Envelope, req.Args.DeviceID)
	if err != nil {
		return CertificateResponse{}, err
	}
	id := req.Args.DeviceID
	cert, err := pairing.ParseCertificate([]byte(req.Args.ClientCrt))
	if err != nil {
		return CertificateResponse{}, sdk.Errorf(sdk.BadRequest, "request.client_crt: %v", err)
	}
	key, err := keys.LoadKey(realm, id)
	if errors.Is(err, pairing.ErrNoCredentials) {
		return CertificateResponse{}, sdk.Errorf(sdk.NotFound, "device %s has no key: call generate_device_csr and have its CSR signed first", id)
	}
	if err != nil {
		return CertificateResponse{}, err
	}
	if err := pairing.CheckCertificate(cert, key, realm, id, time.Now(), 0); err != nil {
		return CertificateResponse{}, sdk.Errorf(sdk.BadRequest, "request.client_crt: %v", err)
	}
	if err := keys.SaveCertificate(realm, id, []byte(req.Args.ClientCrt)); err != nil {
		return CertificateResponse{}, err
	}
	return CertificateResponse{DeviceID: id, Subject: cert.Subject.String(), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC()}, nil
}

func (p *plugin) verifyCertificate(ctx context.Context, req sdk.Request[DeviceRequest]) (*pairing.Verification, error) {
	prov, err := p.deviceProvisioner(req.Envelope, req.Args.DeviceID)
	if err != nil {
		return nil, err
	}
	return prov.Verify(ctx, req.Args.DeviceID)
}

func (p *plugin) hasCertificate(_ context.Context, req sdk.Request[DeviceRequest]) (HasCertificateResponse, error) {
	c, err := decodeSettings(req.Envelope)
	if err != nil {
		return HasCertificateResponse{}, err
	}
	realm, err := c.realm()
	if err != nil {
		return HasCertificateResponse{}, err
	}
	if err := pairing.ValidateDeviceID(req.Args.DeviceID); err != nil {
		return HasCertificateResponse{}, sdk.Errorf(sdk.BadRequest, "request.device_id: %v", err)
	}
	if _, err := p.state(); err != nil {
		return HasCertificateResponse{}, err
	}
	ok, err := p.keys.HasCertificate(realm, req.Args.DeviceID)
	return HasCertificateResponse{HasCertificate: ok}, err
}

func (p *plugin) certificateIsValid(ctx context.Context, req sdk.Request[CertificateValidRequest]) (CertificateValidResponse, error) {
	c, err := decodeSettings(req.Envelope)
	if err != nil {
		return CertificateValidResponse{}, err
	}
	realm, err := c.realm()
	if err != nil {
		return CertificateValidResponse{}, err
	}
	if err := pairing.ValidateDeviceID(req.Args.DeviceID); err != nil {
		return CertificateValidResponse{}, sdk.Errorf(sdk.BadRequest, "request.device_id: %v", err)
	}
	if _, err := p.state(); err != nil {
		return CertificateValidResponse{}, err
	}
	local := &pairing.Provisioner{Store: p.keys, Realm: realm, RenewMargin: time.Nanosecond}
	if err := local.CheckLocal(req.Args.DeviceID); err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			return CertificateValidResponse{}, sdk.Errorf(sdk.InternalError, "the key store cannot be read: %w", err)
		}
		// Missing, unreadable, expired, foreign-key or wrong-subject
		// certificates are answers, not failures.
		return CertificateValidResponse{Valid: false, Reason: err.Error()}, nil //nolint:nilerr // the check's finding is the answer
	}
	if req.Args.Remote {
		prov, err := p.provisioner(c)
		if err != nil {
			return CertificateValidResponse{}, err
		}
		v, err := prov.Verify(ctx, req.Args.DeviceID)
		if err != nil {
			return CertificateValidResponse{}, err
		}
		if !v.Valid {
			return CertificateValidResponse{Valid: false, Reason: fmt.Sprintf("Astarte: %s %s", v.Cause, v.Details)}, nil
		}
	}
	return CertificateValidResponse{Valid: true}, nil
}

func (p *plugin) transportInfo(ctx context.Context, req sdk.Request[DeviceRequest]) (TransportInfoResponse, error) {
	prov, err := p.deviceProvisioner(req.Envelope, req.Args.DeviceID)
	if err != nil {
		return TransportInfoResponse{}, err
	}
	info, err := prov.Info(ctx, req.Args.DeviceID)
	if err != nil {
		return TransportInfoResponse{}, err
	}
	return TransportInfoResponse{Version: info.Version, Status: info.Status, BrokerURL: info.BrokerURL, Protocols: info.Protocols}, nil
}

func (p *plugin) openDevice(ctx context.Context, env *sdk.Envelope, id string) (*device.Device, error) {
	c, err := decodeSettings(env)
	if err != nil {
		return nil, err
	}
	return p.device(ctx, c, id)
}

func info(i *interfaces.Interface) InterfaceInfo {
	return InterfaceInfo{Name: i.Name, Major: i.Major, Minor: i.Minor, Type: i.Type, Ownership: i.Ownership,
		Aggregation: i.Aggregation, Mappings: len(i.Mappings)}
}

func (p *plugin) addInterface(ctx context.Context, req sdk.Request[AddInterfaceRequest]) (InterfaceInfo, error) {
	a := req.Args
	var iface *interfaces.Interface
	var err error
	switch {
	case a.Interface != nil && a.File != "":
		return InterfaceInfo{}, sdk.NewError(sdk.BadRequest, "request: give interface or file, not both")
	case a.Interface != nil:
		raw, _ := json.Marshal(a.Interface)
		iface, err = interfaces.Parse(raw)
	case a.File != "":
		iface, err = interfaces.ParseFile(a.File)
	default:
		return InterfaceInfo{}, sdk.NewError(sdk.BadRequest, "request: interface (a JSON object) or file is required")
	}
	if err != nil {
		var ie *interfaces.Error
		if errors.As(err, &ie) {
			return InterfaceInfo{}, err
		}
		return InterfaceInfo{}, sdk.Errorf(sdk.BadRequest, "request.file: %v", err)
	}
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return InterfaceInfo{}, err
	}
	if err := d.AddInterface(ctx, iface); err != nil {
		return InterfaceInfo{}, err
	}
	return info(iface), nil
}

func (p *plugin) removeInterface(ctx context.Context, req sdk.Request[RemoveInterfaceRequest]) (struct{}, error) {
	d, err := p.openDevice(ctx, req.Envelope, req.Args.DeviceID)
	if err != nil {
		return struct{}{}, err
	}
	return struct{}{}, d.RemoveInterface(ctx, req.Args.InterfaceName)
}

func (p *plugin) listInterfaces(ctx context.Context, req sdk.Request[DeviceRequest]) (ListInterfacesResponse, error) {
	d, err := p.openDevice(ctx, req.Envelope, req.Args.DeviceID)
	if err != nil {
		return ListInterfacesResponse{}, err
	}
	out := ListInterfacesResponse{Interfaces: []InterfaceInfo{}}
	in := &interfaces.Introspection{}
	for _, i := range d.Interfaces() {
		out.Interfaces = append(out.Interfaces, info(i))
		in.Add(i)
	}
	out.Introspection = in.String()
	return out, nil
}

func (p *plugin) connectCap(ctx context.Context, req sdk.Request[ConnectRequest]) (StatusResponse, error) {
	c, err := decodeSettings(req.Envelope)
	if err != nil {
		return StatusResponse{}, err
	}
	a := req.Args
	var hub *hubTarget
	if a.Transport == "grpc" {
		hub = &hubTarget{Address: a.MsghubAddress, NodeID: a.NodeID}
	} else if a.MsghubAddress != "" || a.NodeID != "" {
		return StatusResponse{}, sdk.NewError(sdk.BadRequest, "request: msghub_address and node_id are for transport grpc")
	}
	d, err := p.connect(ctx, c, a.DeviceID, a.Transport, hub)
	if err != nil {
		return StatusResponse{}, err
	}
	if req.Args.Wait {
		timeout := time.Duration(req.Args.TimeoutMS) * time.Millisecond
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		// Ready means connected with the offline queues delivered, so a send
		// right after goes straight out.
		if err := d.WaitDrained(wctx); err != nil {
			st, _ := d.Status(ctx)
			// A hub that answered the Attach with an error says why.
			var se *msghub.StatusError
			if errors.As(d.LastError(), &se) && se.Code != codes.Unavailable {
				e := hubError(se)
				e.Message = fmt.Sprintf("device %s not connected after %s (it keeps trying): %s", d.ID(), timeout, se)
				return StatusResponse{Status: st, HubInfo: p.hubInfo(ctx, d.ID())}, e
			}
			return StatusResponse{Status: st, HubInfo: p.hubInfo(ctx, d.ID())}, &sdk.Error{Code: sdk.ConnectionTimeout, Retryable: true,
				Message: fmt.Sprintf("device %s not connected after %s (it keeps trying): %s", d.ID(), timeout, st.LastError)}
		}
	}
	st, err := d.Status(ctx)
	return StatusResponse{Status: st, HubInfo: p.hubInfo(ctx, d.ID())}, err
}

func (p *plugin) disconnect(ctx context.Context, req sdk.Request[DeviceRequest]) (device.Status, error) {
	d, err := p.openDevice(ctx, req.Envelope, req.Args.DeviceID)
	if err != nil {
		return device.Status{}, err
	}
	if err := p.store.DeleteMeta(ctx, d.ID(), metaAutoconnect); err != nil {
		return device.Status{}, err
	}
	if err := d.Disconnect(ctx); err != nil {
		return device.Status{}, err
	}
	return d.Status(ctx)
}

func (p *plugin) status(ctx context.Context, req sdk.Request[DeviceRequest]) (StatusResponse, error) {
	d, err := p.openDevice(ctx, req.Envelope, req.Args.DeviceID)
	if err != nil {
		return StatusResponse{}, err
	}
	st, err := d.Status(ctx)
	return StatusResponse{Status: st, HubInfo: p.hubInfo(ctx, d.ID())}, err
}

func (p *plugin) send(ctx context.Context, req sdk.Request[SendRequest]) (DeliveryResponse, error) {
	a := req.Args
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return DeliveryResponse{}, err
	}
	got, err := d.Send(ctx, a.Interface, a.Path, a.Value.v, a.Timestamp)
	return DeliveryResponse{Delivery: got}, err
}

func (p *plugin) sendAggregate(ctx context.Context, req sdk.Request[SendRequest]) (DeliveryResponse, error) {
	a := req.Args
	obj, ok := a.Value.v.(map[string]any)
	if !ok {
		return DeliveryResponse{}, sdk.NewError(sdk.BadRequest, "request.value: send_aggregate wants an object keyed by the last endpoint segment")
	}
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return DeliveryResponse{}, err
	}
	got, err := d.SendObject(ctx, a.Interface, a.Path, obj, a.Timestamp)
	return DeliveryResponse{Delivery: got}, err
}

func (p *plugin) sendBatch(ctx context.Context, req sdk.Request[SendBatchRequest]) (SendBatchResponse, error) {
	a := req.Args
	if n := len(a.Messages); n == 0 || n > device.MaxBatch {
		return SendBatchResponse{}, sdk.Errorf(sdk.BadRequest, "request.messages: %d messages, want 1 to %d", n, device.MaxBatch)
	}
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return SendBatchResponse{}, err
	}
	items := make([]device.BatchItem, len(a.Messages))
	for k, m := range a.Messages {
		it := device.BatchItem{Interface: m.Interface, Path: m.Path, Timestamp: m.Timestamp}
		if m.Value != nil {
			it.Value = m.Value.v
		}
		if m.Values != nil {
			it.Values = make(map[string]any, len(m.Values))
			for key, v := range m.Values {
				it.Values[key] = v.v
			}
		}
		items[k] = it
	}
	res, err := d.SendBatch(ctx, items)
	if err != nil {
		return SendBatchResponse{}, err
	}
	out := SendBatchResponse{Results: make([]BatchResult, len(res))}
	for k, r := range res {
		if r.Err != nil {
			e := itemError(r.Err)
			out.Results[k] = BatchResult{Index: k, Error: &BatchError{Code: e.Code, Message: e.Message, Retryable: e.Retryable}}
			out.Failed++
			continue
		}
		out.Results[k] = BatchResult{Index: k, OK: true, Delivery: r.Delivery}
		switch r.Delivery {
		case device.Delivered:
			out.Delivered++
		case device.QueuedStored:
			out.QueuedStored++
		case device.QueuedVolatile:
			out.QueuedVolatile++
		}
	}
	return out, nil
}

// batchErrorHandlers map the error of one message of a batch, as the SDK
// maps a capability's error.
var batchErrorHandlers = errorHandlers()

// itemError maps the error of one message of send_batch to a contract code.
func itemError(err error) *sdk.Error {
	var e *sdk.Error
	if errors.As(err, &e) {
		return e
	}
	for _, h := range batchErrorHandlers {
		if e := h(err); e != nil {
			return e
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &sdk.Error{Code: sdk.RequestTimeout, Message: "not sent before the call ended: " + err.Error(), Err: err, Retryable: true}
	}
	return &sdk.Error{Code: sdk.InternalError, Message: err.Error(), Err: err}
}

func (p *plugin) setProperty(ctx context.Context, req sdk.Request[PropertyRequest]) (DeliveryResponse, error) {
	a := req.Args
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return DeliveryResponse{}, err
	}
	got, err := d.SetProperty(ctx, a.Interface, a.Path, a.Value.v)
	return DeliveryResponse{Delivery: got}, err
}

func (p *plugin) unsetProperty(ctx context.Context, req sdk.Request[PropertyPathRequest]) (DeliveryResponse, error) {
	a := req.Args
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return DeliveryResponse{}, err
	}
	got, err := d.UnsetProperty(ctx, a.Interface, a.Path)
	return DeliveryResponse{Delivery: got}, err
}

func (p *plugin) getProperty(ctx context.Context, req sdk.Request[PropertyPathRequest]) (GetPropertyResponse, error) {
	a := req.Args
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return GetPropertyResponse{}, err
	}
	v, ok, err := d.Property(ctx, a.Interface, a.Path)
	return GetPropertyResponse{Set: ok, Value: v}, err
}

func (p *plugin) listProperties(ctx context.Context, req sdk.Request[ListPropertiesRequest]) (ListPropertiesResponse, error) {
	d, err := p.openDevice(ctx, req.Envelope, req.Args.DeviceID)
	if err != nil {
		return ListPropertiesResponse{}, err
	}
	props, err := d.Properties(ctx, req.Args.Interface)
	return ListPropertiesResponse{Properties: props}, err
}

func (p *plugin) subscribe(ctx context.Context, req sdk.Request[SubscribeRequest], out *sdk.Stream[device.Event]) error {
	a := req.Args
	want := map[device.EventType]bool{}
	for _, t := range a.Types {
		switch et := device.EventType(t); et {
		case device.EventConnected, device.EventDisconnected, device.EventDataReceived, device.EventPropertyUnset, device.EventHubError:
			want[et] = true
		default:
			return sdk.Errorf(sdk.BadRequest, "request.types: unknown event type %q", t)
		}
	}
	d, err := p.openDevice(ctx, req.Envelope, a.DeviceID)
	if err != nil {
		return err
	}
	sub := d.Subscribe(0)
	defer sub.Close()
	// Subscribed: the caller sees the stream open now, not at the first
	// event (which may be minutes away).
	if err := out.Open(); err != nil {
		return err
	}
	var timeout <-chan time.Time
	if a.TimeoutMS > 0 {
		t := time.NewTimer(time.Duration(a.TimeoutMS) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	sent := 0
	for a.MaxEvents == 0 || sent < a.MaxEvents {
		select {
		case e, ok := <-sub.Events():
			if !ok {
				return nil
			}
			if len(want) > 0 && !want[e.Type] {
				continue
			}
			if err := out.Send(e); err != nil {
				return err
			}
			sent++
		case <-timeout:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}
