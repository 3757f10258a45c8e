package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

func init() {
	emulators = append(emulators, emulator{name: "DSYNC", appID: "dsync", start: startDSYNC})
}

// The sample data layout of the dev stack: entity tokens are fixed so that
// records the plugin keeps in its SQLite store stay reachable across runs.
const (
	devProductToken = "product-6f1d2c3b4a5968778695a4b3c2d1e0f1"   //nolint:gosec // an entity id of the sample data, not a credential
	devOrderToken   = "orderline-0a1b2c3d4e5f60718293a4b5c6d7e8f9" //nolint:gosec // an entity id of the sample data, not a credential
)

func devDataLayout() map[string]any {
	field := func(treekey, typ, name string, pk bool) map[string]any {
		return map[string]any{"treekey": treekey, "type": typ, "name": name, "primary_key": pk, "required": pk}
	}
	return map[string]any{"data_layout": []any{
		map[string]any{
			"entity_name": "product", "treekey": "product", "endpoint_url": "/entity/product", "entity_token": devProductToken,
			"fields": []any{
				field("product.sku", "text", "sku", true),
				field("product.name", "text", "name", false),
				field("product.price", "number", "price", false),
			},
		},
		map[string]any{
			"entity_name": "order line", "treekey": "order", "endpoint_url": "/entity/order", "entity_token": devOrderToken,
			"fields": []any{
				field("order.id", "number", "id", true),
				field("order.placed", "datetime", "placed", false),
				field("order.email", "email", "email", false),
			},
		},
	}}
}

// startDSYNC runs the DSYNC platform emulator and points the dsync
// connector at it. Both keys are random per run and never printed: the
// inbound key is written to a 0600 file the curl examples read, and the
// realtime examples post request files (0600) that carry the platform key.
func startDSYNC(_ context.Context, dir string) (started, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return started{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return started{}, err
	}
	platformKey, inboundKey := "dev-platform-"+randomHex(16), "dev-inbound-"+randomHex(16)
	emu, err := dsyncemu.Start(dsyncemu.Config{APIKey: platformKey, IDKeys: map[string]string{devProductToken: "sku", devOrderToken: "id"}}, "")
	if err != nil {
		return started{}, err
	}
	keyFile := filepath.Join(dir, "inbound_api_key")
	files := map[string]string{keyFile: inboundKey}
	auth := map[string]any{"token": map[string]any{"token": platformKey}}
	requests := []struct {
		capability string
		request    map[string]any
	}{
		{"realtime_create", map[string]any{"entity_token": devProductToken, "data": map[string]any{"sku": "DEV-1", "name": "Desk", "price": 120}}},
		{"realtime_update", map[string]any{"entity_token": devProductToken, "data": map[string]any{"sku": "DEV-1", "name": "Desk", "price": 99.5}}},
		{"realtime_delete", map[string]any{"entity_token": devProductToken, "entity_id": "DEV-1"}},
	}
	var examples []string
	for _, r := range requests {
		b, err := json.Marshal(map[string]any{"request": r.request, "auth": auth})
		if err != nil {
			_ = emu.Close()
			return started{}, err
		}
		f := filepath.Join(dir, r.capability+".json")
		files[f] = string(b)
		examples = append(examples, fmt.Sprintf("curl -s {URL}/v1/connectors/dsync/%s -d @%s; echo", r.capability, shellQuote(f)))
	}
	for f, content := range files {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			_ = emu.Close()
			return started{}, err
		}
	}
	// The platform's calls into the connector, through the host.
	key := fmt.Sprintf(`-H "Auth-Token: $(cat %s)"`, shellQuote(keyFile))
	sku := "DEV-" + randomHex(4)
	examples = append(examples,
		`curl -s {URL}/v1/connectors/dsync/generate_entity_token -d '{"request":{"entity_name":"Order Line"}}'; echo`,
		"curl -s {URL}/v1/inbound/dsync/datalayout "+key+"; echo",
		"curl -s {URL}/v1/inbound/dsync/entity/product "+key+` -H 'Content-Type: application/json' -d '{"sku":"`+sku+`","name":"Lamp","price":25}'; echo`,
		`curl -s "{URL}/v1/inbound/dsync/entity/product?limit=10" `+key+"; echo",
		"curl -s -X DELETE {URL}/v1/inbound/dsync/entity/product/"+sku+" "+key+"; echo",
	)
	return started{
		settings: map[string]any{
			"realtime_endpoint": emu.RealtimeURL(),
			"data_layout":       devDataLayout(),
			"inbound_api_key":   inboundKey,
		},
		about:    fmt.Sprintf("realtime %s (keys and request files in %s)", emu.RealtimeURL(), dir),
		examples: examples,
		stop:     func() { _ = emu.Close() },
	}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
