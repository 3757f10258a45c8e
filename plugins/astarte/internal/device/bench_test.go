package device

import (
	"context"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
)

// benchIface has an unreliable (QoS 0) and a guaranteed stored (QoS 1)
// mapping.
const benchIface = `{"interface_name":"com.example.Bench","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/q0","type":"double","reliability":"unreliable"},
              {"endpoint":"/q1","type":"double","reliability":"guaranteed","retention":"stored"}]}`

func benchDevice(b *testing.B) (*rig, *Device, string) {
	b.Helper()
	r := newRig(b)
	id := r.pair(b)
	d := r.device(b, id, benchIface)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Connect(r.transport(b, id, nil)); err != nil {
		b.Fatal(err)
	}
	if err := d.WaitDrained(ctx); err != nil {
		b.Fatal(err)
	}
	return r, d, id
}

func benchSend(b *testing.B, path string) {
	_, d, _ := benchDevice(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Send(ctx, "com.example.Bench", path, float64(i), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkDeviceSendQoS0 sends unreliable datastream values through the
// device (validation, BSON encoding, MQTT QoS 0).
func BenchmarkDeviceSendQoS0(b *testing.B) { benchSend(b, "/q0") }

// BenchmarkDeviceSendQoS1 sends guaranteed values, each waiting for PUBACK.
func BenchmarkDeviceSendQoS1(b *testing.B) { benchSend(b, "/q1") }

func benchRaw(b *testing.B, qos byte) {
	r, d, id := benchDevice(b)
	// The raw client uses the same certificate; the device disconnects
	// first so the client id is free.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Disconnect(ctx); err != nil {
		b.Fatal(err)
	}
	cert, err := r.keys.TLSCertificate("test", id)
	if err != nil {
		b.Fatal(err)
	}
	o := paho.NewClientOptions().AddBroker("tls://" + r.emu.BrokerAddr()).SetClientID("test/" + id).SetProtocolVersion(4).
		SetTLSConfig(r.emu.ClientTLSConfig(cert)).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal("raw connect failed")
	}
	defer c.Disconnect(0)
	topic := "test/" + id + "/com.example.Bench/q0"
	if qos == 1 {
		topic = "test/" + id + "/com.example.Bench/q1"
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data, err := payload.Encode(float64(i), nil)
		if err != nil {
			b.Fatal(err)
		}
		tok := c.Publish(topic, qos, false, data)
		tok.Wait()
		if tok.Error() != nil {
			b.Fatal(tok.Error())
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRawPahoQoS0 publishes the same BSON with a bare paho client.
func BenchmarkRawPahoQoS0(b *testing.B) { benchRaw(b, 0) }

// BenchmarkRawPahoQoS1 publishes the same BSON at QoS 1, waiting each PUBACK.
func BenchmarkRawPahoQoS1(b *testing.B) { benchRaw(b, 1) }

// BenchmarkQueueDrain queues b.N stored messages offline, then measures
// how fast they are delivered after reconnecting.
func BenchmarkQueueDrain(b *testing.B) {
	r := newRig(b)
	id := r.pair(b)
	d := r.device(b, id, benchIface)
	g := newGate()
	g.Close()
	ctx := context.Background()
	if err := d.Connect(r.transport(b, id, g)); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := d.Send(ctx, "com.example.Bench", "/q1", float64(i), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	g.Open()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := d.WaitDrained(wctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
