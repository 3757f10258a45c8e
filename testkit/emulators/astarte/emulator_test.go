package astarteemu

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func start(t *testing.T, opts Options) *Emulator {
	t.Helper()
	e, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func testID(b byte) string {
	raw := bytes.Repeat([]byte{b}, 16)
	return base64.RawURLEncoding.EncodeToString(raw)
}

type api struct {
	t    *testing.T
	e    *Emulator
	http *http.Client
}

func newAPI(t *testing.T, e *Emulator) *api {
	return &api{t: t, e: e, http: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.CAPool()}}}}
}

func (a *api) call(method, path, bearer string, data any) (int, map[string]any) {
	a.t.Helper()
	var body io.Reader
	if data != nil {
		b, _ := json.Marshal(map[string]any{"data": data})
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.e.PairingURL()+path, body)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func csrPEM(t *testing.T, cn string) ([]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{"Devices"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

func TestPairingAPI(t *testing.T) {
	t.Parallel()
	e := start(t, Options{Realm: "myrealm"})
	a := newAPI(t, e)
	id := testID(1)
	good, err := e.SignJWT([]string{".*::.*"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	getOnly, _ := e.SignJWT([]string{"GET::.*"}, time.Minute)
	otherPath, _ := e.SignJWT([]string{"POST::devices/.*"}, time.Minute)
	expired, _ := e.SignJWT([]string{".*::.*"}, -time.Minute)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, _ := jwtWithKey(otherKey)

	reg := func(tok string, hw string) (int, map[string]any) {
		return a.call("POST", "/v1/myrealm/agent/devices", tok, map[string]any{"hw_id": hw})
	}
	for name, c := range map[string]struct {
		tok, hw string
		want    int
	}{
		"no jwt":       {"", id, 401},
		"garbage jwt":  {"abc", id, 401},
		"expired":      {expired, id, 401},
		"forged":       {forged, id, 401},
		"method rule":  {getOnly, id, 403},
		"path rule":    {otherPath, id, 403},
		"bad hw_id":    {good, "short", 422},
		"not base64":   {good, strings.Repeat("*", 22), 422},
		"wrong length": {good, base64.RawURLEncoding.EncodeToString(make([]byte, 15)), 422},
	} {
		if status, body := reg(c.tok, c.hw); status != c.want {
			t.Errorf("%s: status %d, want %d (%v)", name, status, c.want, body)
		} else if _, ok := body["errors"]; !ok {
			t.Errorf("%s: no errors object in %v", name, body)
		}
	}
	if status, _ := a.call("POST", "/v1/otherrealm/agent/devices", good, map[string]any{"hw_id": id}); status != 404 {
		t.Errorf("other realm: %d", status)
	}
	status, body := reg(good, id)
	if status != 201 {
		t.Fatalf("register: %d %v", status, body)
	}
	secret, _ := body["data"].(map[string]any)["credentials_secret"].(string)
	if secret == "" {
		t.Fatal("no secret")
	}
	// Registering again before credentials were issued gives a new secret.
	status, body = reg(good, id)
	if status != 201 {
		t.Fatalf("re-register: %d", status)
	}
	secret = body["data"].(map[string]any)["credentials_secret"].(string)

	info := "/v1/myrealm/devices/" + id
	if s, _ := a.call("GET", info, "", nil); s != 401 {
		t.Errorf("info without secret: %d", s)
	}
	if s, _ := a.call("GET", info, "wrong", nil); s != 403 {
		t.Errorf("info wrong secret: %d", s)
	}
	s, body := a.call("GET", info, secret, nil)
	if s != 200 {
		t.Fatalf("info: %d", s)
	}
	broker := body["data"].(map[string]any)["protocols"].(map[string]any)["astarte_mqtt_v1"].(map[string]any)["broker_url"]
	if broker != e.BrokerURL() || !strings.HasPrefix(e.BrokerURL(), "mqtts://127.0.0.1:") {
		t.Fatalf("broker_url %v", broker)
	}

	creds := info + "/protocols/astarte_mqtt_v1/credentials"
	if s, _ := a.call("POST", creds, secret, map[string]string{"csr": "not pem"}); s != 422 {
		t.Errorf("non-PEM CSR: %d", s)
	}
	if s, _ := a.call("POST", creds, "", map[string]string{"csr": "x"}); s != 401 {
		t.Errorf("credentials without secret: %d", s)
	}
	csr, key := csrPEM(t, "evil/other")
	s, body = a.call("POST", creds, secret, map[string]string{"csr": string(csr)})
	if s != 201 {
		t.Fatalf("credentials: %d %v", s, body)
	}
	crt := body["data"].(map[string]any)["client_crt"].(string)
	block, _ := pem.Decode([]byte(crt))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "myrealm/"+id {
		t.Fatalf("CN %q not forced to realm/device_id", cert.Subject.CommonName)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatal("certificate key is not the CSR key")
	}
	if st, _ := reg(good, id); st != 422 {
		t.Fatalf("register after credentials: %d, want 422", st)
	}
	if _, n := e.Registered(id); n != 1 {
		t.Fatalf("certificates issued = %d", n)
	}

	verify := creds + "/verify"
	s, body = a.call("POST", verify, secret, map[string]string{"client_crt": crt})
	if d := body["data"].(map[string]any); s != 200 || d["valid"] != true || d["until"] == nil {
		t.Fatalf("verify: %d %v", s, body)
	}
	s, body = a.call("POST", verify, secret, map[string]string{"client_crt": "junk"})
	if d := body["data"].(map[string]any); s != 200 || d["valid"] != false || d["cause"] != "INVALID_ENCODING" {
		t.Fatalf("verify junk: %d %v", s, body)
	}
	other, _ := e.IssueClientCertificate("myrealm/"+testID(2), time.Hour)
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate[0]})
	s, body = a.call("POST", verify, secret, map[string]string{"client_crt": string(otherPEM)})
	if d := body["data"].(map[string]any); d["valid"] != false || d["cause"] != "INVALID_SUBJECT" {
		t.Fatalf("verify other device: %d %v", s, body)
	}
	if s, _ := a.call("GET", "/nope", "", nil); s != 404 {
		t.Fatalf("unknown path %d", s)
	}
}

func jwtWithKey(key *ecdsa.PrivateKey) (string, error) {
	// A token with valid claims signed by a key that is not the realm's.
	e := &Emulator{}
	der, _ := x509.MarshalECPrivateKey(key)
	e.realmPriv = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	return e.SignJWT([]string{".*::.*"}, time.Minute)
}

func TestVerifyExpiredAndForeignCertificates(t *testing.T) {
	t.Parallel()
	e := start(t, Options{PlainHTTP: true})
	if !strings.HasPrefix(e.PairingURL(), "http://127.0.0.1:") {
		t.Fatal(e.PairingURL())
	}
	a := newAPI(t, e)
	id := testID(3)
	secret := e.RegisterDevice(id)
	verify := "/v1/test/devices/" + id + "/protocols/astarte_mqtt_v1/credentials/verify"
	expired, _ := e.IssueClientCertificate("test/"+id, -time.Second)
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: expired.Certificate[0]})
	_, body := a.call("POST", verify, secret, map[string]string{"client_crt": string(p)})
	if d := body["data"].(map[string]any); d["valid"] != false || d["cause"] != "EXPIRED" {
		t.Fatalf("expired: %v", body)
	}
	foreign := start(t, Options{})
	fc, _ := foreign.IssueClientCertificate("test/"+id, time.Hour)
	p = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fc.Certificate[0]})
	_, body = a.call("POST", verify, secret, map[string]string{"client_crt": string(p)})
	if d := body["data"].(map[string]any); d["valid"] != false || d["cause"] != "INVALID_ISSUER" {
		t.Fatalf("foreign CA: %v", body)
	}
}

func mqttClient(t *testing.T, e *Emulator, clientID string, cert tls.Certificate) (paho.Client, error) {
	return mqttClientLost(t, e, clientID, cert, nil)
}

func mqttClientLost(t *testing.T, e *Emulator, clientID string, cert tls.Certificate, lost chan<- error) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tls://" + e.BrokerAddr()).SetClientID(clientID).
		SetTLSConfig(e.ClientTLSConfig(cert)).SetCleanSession(true).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).SetConnectRetry(false).SetProtocolVersion(4)
	if lost != nil {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timeout")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func TestBrokerAuthACLAndRecording(t *testing.T) {
	t.Parallel()
	e := start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	me := "test/" + testID(4)
	cert, _ := e.IssueClientCertificate(me, time.Hour)

	// The client id must be the certificate CN.
	if _, err := mqttClient(t, e, "test/"+testID(5), cert); err == nil {
		t.Fatal("client id different from CN accepted")
	}
	if len(e.AuthFailures()) != 1 {
		t.Fatalf("auth failures %v", e.AuthFailures())
	}
	// A certificate from another CA is refused at TLS.
	foreign := start(t, Options{})
	fc, _ := foreign.IssueClientCertificate(me, time.Hour)
	if _, err := mqttClient(t, e, me, fc); err == nil {
		t.Fatal("foreign certificate accepted")
	}

	c, err := mqttClient(t, e, me, cert)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(me, 2, false, "a.B:1:0"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("publish on base topic failed")
	}
	if tok := c.Publish(me+"/a.B/x", 1, false, []byte{1, 2}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("publish in own tree failed")
	}
	// Subscribing outside the tree is refused (SUBACK failure), inside is granted.
	tok := c.Subscribe("test/"+testID(6)+"/#", 2, nil)
	tok.WaitTimeout(5 * time.Second)
	if codes := tok.(*paho.SubscribeToken).Result(); codes["test/"+testID(6)+"/#"] != 0x80 {
		t.Fatalf("foreign subscribe result %v", codes)
	}
	tok = c.Subscribe(me+"/#", 2, nil)
	tok.WaitTimeout(5 * time.Second)
	if codes := tok.(*paho.SubscribeToken).Result(); codes[me+"/#"] != 2 {
		t.Fatalf("own subscribe result %v", codes)
	}
	// A QoS 0 publish outside the tree is dropped; QoS 1 ends the connection.
	c.Publish("test/"+testID(6)+"/a.B/x", 0, false, []byte("x")).WaitTimeout(5 * time.Second)
	c.Publish("other", 1, false, []byte("x"))
	if err := e.Wait(ctx, func() bool { return len(e.Denials()) >= 3 }); err != nil {
		t.Fatalf("denials %v: %v", e.Denials(), err)
	}
	msgs := e.MessagesFrom(me)
	if len(msgs) != 2 || msgs[0].Topic != me || msgs[0].QoS != 2 || string(msgs[0].Payload) != "a.B:1:0" ||
		msgs[1].Topic != me+"/a.B/x" || msgs[1].QoS != 1 || !bytes.Equal(msgs[1].Payload, []byte{1, 2}) {
		t.Fatalf("recorded %+v", msgs)
	}
	for _, m := range e.Messages() {
		if !strings.HasPrefix(m.Topic, me) {
			t.Fatalf("message outside the tree recorded: %+v", m)
		}
	}
	if subs := e.Subscriptions(me); subs[me+"/#"] != 2 || len(subs) != 1 {
		t.Fatalf("subscriptions %v", subs)
	}
}

func TestBrokerPublishAndRestart(t *testing.T) {
	t.Parallel()
	e := start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := testID(7)
	me := "test/" + id
	cert, _ := e.IssueClientCertificate(me, time.Hour)
	got := make(chan paho.Message, 10)
	c, err := mqttClient(t, e, me, cert)
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(me+"/#", 2, func(_ paho.Client, m paho.Message) { got <- m }).WaitTimeout(5 * time.Second)
	if err := e.PublishData(id, "a.B", "/x", []byte{9}, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.PublishConsumerProperties(id, []string{"a.B/x", "a.B/y"}); err != nil {
		t.Fatal(err)
	}
	for k, want := range []string{me + "/a.B/x", me + "/control/consumer/properties"} {
		select {
		case m := <-got:
			if m.Topic() != want {
				t.Fatalf("message %d topic %s, want %s", k, m.Topic(), want)
			}
			if k == 1 {
				entries, err := DecodePropertyList(m.Payload())
				if err != nil || strings.Join(entries, ",") != "a.B/x,a.B/y" {
					t.Fatalf("property list %v %v", entries, err)
				}
			}
		case <-ctx.Done():
			t.Fatal("server publish not received")
		}
	}

	addr := e.BrokerAddr()
	if err := e.StopBroker(); err != nil {
		t.Fatal(err)
	}
	if e.BrokerRunning() {
		t.Fatal("still running")
	}
	if _, err := mqttClient(t, e, me, cert); err == nil {
		t.Fatal("connected to a stopped broker")
	}
	if err := e.StartBroker(); err != nil {
		t.Fatal(err)
	}
	if e.BrokerAddr() != addr {
		t.Fatalf("restarted on %s, want %s", e.BrokerAddr(), addr)
	}
	lost := make(chan error, 1)
	if _, err := mqttClientLost(t, e, me, cert, lost); err != nil {
		t.Fatal(err)
	}
	if err := e.KickClient(me); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-ctx.Done():
		t.Fatal("kicked client still connected")
	}
}

// StopBrokerAfter: the broker records and acknowledges exactly n more
// publishes, refuses the next one and stops; it starts again.
func TestStopBrokerAfter(t *testing.T) {
	t.Parallel()
	e := start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	me := "test/" + testID(7)
	cert, _ := e.IssueClientCertificate(me, time.Hour)
	c, err := mqttClient(t, e, me, cert)
	if err != nil {
		t.Fatal(err)
	}
	e.StopBrokerAfter(3)
	var toks []paho.Token
	for k := 0; k < 6; k++ {
		toks = append(toks, c.Publish(me+"/i/v", 1, false, []byte{byte(k)}))
	}
	if err := e.Wait(ctx, func() bool { return !e.BrokerRunning() }); err != nil {
		t.Fatal(err)
	}
	for k, tok := range toks[:3] {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d before the stop: %v", k, tok.Error())
		}
	}
	got := e.MessagesFrom(me)
	if len(got) != 3 || got[2].Payload[0] != 2 {
		t.Fatalf("recorded %+v, want the first 3", got)
	}
	if err := e.StartBroker(); err != nil {
		t.Fatal(err)
	}
	c2, err := mqttClient(t, e, me, cert)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c2.Publish(me+"/i/v", 1, false, []byte{9}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish after restart: %v", tok.Error())
	}
}

func TestStartRejectsNonLoopback(t *testing.T) {
	t.Parallel()
	if _, err := Start(Options{BrokerAddr: "0.0.0.0:0"}); err == nil {
		t.Fatal("0.0.0.0 accepted")
	}
}

func TestWriteFilesAndSettings(t *testing.T) {
	t.Parallel()
	e := start(t, Options{})
	dir := t.TempDir() + "/emu"
	f, err := e.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(f.CAFile)
	if err != nil || !bytes.Equal(ca, e.CACertPEM()) {
		t.Fatal("CA file differs")
	}
	st, err := os.Stat(f.RealmKeyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("realm key %v %v", st, err)
	}
	s := e.Settings(f)
	if s["pairing_base_url"] != e.PairingURL() || s["realm"] != "test" || s["ca_file"] != f.CAFile {
		t.Fatalf("settings %v", s)
	}
}

func FuzzDecodePropertyList(f *testing.F) {
	seed, _ := EncodePropertyList([]string{"a.B/c", "d.E/f"})
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := DecodePropertyList(data)
		if err != nil {
			return
		}
		again, err := EncodePropertyList(entries)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodePropertyList(again)
		if err != nil || strings.Join(back, ";") != strings.Join(entries, ";") {
			t.Fatalf("round trip %q -> %q %v", entries, back, err)
		}
	})
}
