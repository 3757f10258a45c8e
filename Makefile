# connector-host — see README.md. Every binary builds with CGO_ENABLED=0 (no cgo anywhere);
# only `go test -race` turns cgo on, because the race detector's runtime needs it.
SHELL := /bin/bash
GO    ?= go
export CGO_ENABLED := 0

BIN   := bin
TOOLS := $(abspath $(BIN)/tools)

# plugin source directory : app_id
PLUGINS := stoa:stoa dsync:dsync eventsprotocol:events-protocol astarte:astarte

BUF_VERSION           := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GRPC       := v1.6.2
GOLANGCI_VERSION      := v2.15.0

.PHONY: all build plugins testplugins benchbins test vet fmtcheck proto lint tools bench run conformance clean

all: build

## build: the host, the scaffold tool, every plugin and the test plugins
build: plugins testplugins
	$(GO) build -o $(BIN)/connector-host ./cmd/connector-host
	@if [ -d cmd/scaffold ]; then $(GO) build -o $(BIN)/scaffold ./cmd/scaffold; fi

plugins:
	@mkdir -p $(BIN)/plugins
	@for p in $(PLUGINS); do dir=$${p%%:*}; id=$${p##*:}; \
	  if [ -f plugins/$$dir/main.go ]; then \
	    echo "go build -o $(BIN)/plugins/connector-$$id ./plugins/$$dir"; \
	    $(GO) build -o $(BIN)/plugins/connector-$$id ./plugins/$$dir || exit 1; \
	  fi; done

testplugins:
	@mkdir -p $(BIN)/testplugins
	$(GO) build -o $(BIN)/testplugins/connector-reference ./testkit/cmd/connector-reference
	$(GO) build -o $(BIN)/testplugins/connector-reference-oauth ./testkit/cmd/connector-reference-oauth

# Benchmark-only binaries (not loaded by `make run`).
benchbins:
	@mkdir -p $(BIN)/bench
	$(GO) build -o $(BIN)/bench/connector-minimal ./testkit/cmd/minimalplugin
	$(GO) build -o $(BIN)/bench/hostbench ./testkit/cmd/hostbench

## test: gofmt and vet, then every test with the race detector (what CI runs)
test: build fmtcheck vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...

vet:
	$(GO) vet ./...

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	  if [ -n "$$out" ]; then echo "gofmt -w needed on:"; echo "$$out"; exit 1; fi

## proto: regenerate proto/gen from proto/ with buf (tools installed on demand)
proto: tools
	PATH="$(TOOLS):$$PATH" $(TOOLS)/buf lint
	PATH="$(TOOLS):$$PATH" $(TOOLS)/buf generate
	cd proto/msghub-0.8 && $(TOOLS)/buf lint && $(TOOLS)/buf build --exclude-imports --exclude-source-info \
	  --as-file-descriptor-set -o ../gen/astarteplatform/msghub/v08/message_hub.binpb

## lint: golangci-lint with the committed .golangci.yml
lint: $(TOOLS)/golangci-lint
	$(TOOLS)/golangci-lint run ./...

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/golangci-lint
$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GRPC)
$(TOOLS)/golangci-lint:
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

## conformance: the conformance suite against every plugin in bin/plugins and bin/testplugins,
## with the fixtures of its source (plugins/<id>/ or testkit/<id>/testdata/conformance, dashes
## removed from the id); reports in bin/conformance/<id>.json; fails if any check failed
conformance: build
	@mkdir -p $(BIN)/conformance
	@fail=0; for bin in $(BIN)/plugins/connector-* $(BIN)/testplugins/connector-*; do \
	  [ -x "$$bin" ] || continue; \
	  id=$${bin##*/connector-}; dir=$${id//-/}; \
	  case "$$bin" in $(BIN)/plugins/*) src=plugins/$$dir ;; *) src=testkit/$$dir ;; esac; \
	  fx=(); [ -d "$$src/testdata/conformance" ] && fx=(--fixtures "$$src/testdata/conformance"); \
	  echo; echo "== $$bin"; \
	  $(BIN)/connector-host conformance "$$bin" "$${fx[@]}" --json-report $(BIN)/conformance/$$id.json || fail=1; \
	done; \
	if [ $$fail -ne 0 ]; then echo; echo "conformance: some plugin failed a check (reports in $(BIN)/conformance/)"; fi; \
	exit $$fail

## bench: the performance suite; prints tables with ratios (see docs/performance.md)
bench: build benchbins
	$(BIN)/bench/hostbench -minimal $(BIN)/bench/connector-minimal
	$(GO) run ./plugins/astarte/cmd/astarte-hostbench -host $(BIN)/connector-host -plugin $(BIN)/plugins/connector-astarte
	$(GO) run ./plugins/astarte/cmd/msghub-hostbench -host $(BIN)/connector-host -plugin $(BIN)/plugins/connector-astarte
	$(GO) run ./testkit/emulators/stoa/cmd/stoa-bench -host $(BIN)/connector-host -plugin $(BIN)/plugins/connector-stoa
	$(GO) run ./plugins/eventsprotocol/cmd/events-hostbench -host $(BIN)/connector-host -plugin $(BIN)/plugins/connector-events-protocol -reference $(BIN)/testplugins/connector-reference
	$(GO) run ./plugins/dsync/cmd/dsync-hostbench -host $(BIN)/connector-host -plugin $(BIN)/plugins/connector-dsync

## run: build, start the local emulators and the host with every plugin
run: build
	$(GO) build -o $(BIN)/devstack ./testkit/cmd/devstack
	@# Built, not `go run`: a Ctrl-C then ends the stack cleanly (exit 0) instead of `go run`'s exit 1.
	$(BIN)/devstack

clean:
	rm -rf $(BIN) data
