//go:build deps

// Package deps pins the modules the project depends on while the packages that
// use them are being written, so that go mod tidy keeps them in go.mod.
package deps

import (
	_ "github.com/apache/arrow-go/v18/arrow/ipc"
	_ "github.com/apache/arrow-go/v18/parquet/pqarrow"
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/go-oauth2/oauth2/v4/server"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/hashicorp/go-plugin"
	_ "github.com/invopop/jsonschema"
	_ "github.com/mochi-mqtt/server/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/spf13/cobra"
	_ "go.mongodb.org/mongo-driver/v2/bson"
	_ "golang.org/x/oauth2"
	_ "modernc.org/sqlite"
)

import (
	_ "github.com/google/uuid"
	_ "github.com/hashicorp/go-hclog"
	_ "golang.org/x/sync/errgroup"
	_ "gopkg.in/yaml.v3"
)
