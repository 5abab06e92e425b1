# moat's two everyday commands are 'make demo' and 'make test'; everything
# they need is built here on first use.

GO        ?= go
BIN       := bin
CONSUL    := $(BIN)/consul
PROGRAMS  := $(BIN)/moat $(BIN)/auth $(BIN)/profile $(BIN)/audit
GOFILES   := $(shell find . -name '*.go' -not -path './tools/*' -not -path './.dev/*') go.mod go.sum

.PHONY: demo dev test test-short build consul generate check-generated lint vet fmt clean bench

## demo: build what is missing, then run the example services through Consul over mTLS
demo: $(CONSUL) build
	$(BIN)/moat demo

## dev: run the development environment (CA, certificates, Consul) until Ctrl-C
dev: $(CONSUL) build
	$(BIN)/moat dev

## test: every test, with the race detector, against a real Consul agent
test: $(CONSUL)
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	MOAT_CONSUL_BIN=$(abspath $(CONSUL)) $(GO) test -race -count=1 -timeout 20m ./...

## test-short: unit tests only, no Consul
test-short:
	$(GO) test -short -count=1 ./...

## bench: handshake and call hot path of moat against grpc-go baselines, with budgets
## (a few minutes; table on stdout, report.html and report.json in bench/out/)
bench: $(CONSUL) $(BIN)/moat
	MOAT_CONSUL_BIN=$(abspath $(CONSUL)) $(BIN)/moat bench --budgets bench/budgets.yaml --out bench/out

build: $(PROGRAMS)

$(BIN)/moat: $(GOFILES)
	$(GO) build -o $@ ./cmd/moat
$(BIN)/auth: $(GOFILES)
	$(GO) build -o $@ ./services/auth/cmd/auth
$(BIN)/profile: $(GOFILES)
	$(GO) build -o $@ ./services/profile/cmd/profile
$(BIN)/audit: $(GOFILES)
	$(GO) build -o $@ ./services/audit/cmd/audit

## consul: build the MPL-2.0 Consul 1.16.1 agent from the Go module proxy (once)
consul: $(CONSUL)
$(CONSUL):
	@mkdir -p $(BIN)
	@echo "building Consul 1.16.1 into $(CONSUL) (first time only, a few minutes)..."
	@cd tools/consul && $(GO) build -v -o ../../$(CONSUL) github.com/hashicorp/consul 2>&1 | \
		awk '{ n++; if (n % 100 == 0) { printf "  %d packages compiled\n", n; fflush() } }'
	@test -x $(CONSUL) || { echo "Consul build failed"; exit 1; }
	@echo "Consul built: $$($(CONSUL) version | head -1)"

$(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc: tools/buf/go.mod
	@mkdir -p $(BIN)
	$(GO) build -modfile=tools/buf/go.mod -o $(BIN)/buf github.com/bufbuild/buf/cmd/buf
	$(GO) build -modfile=tools/buf/go.mod -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -modfile=tools/buf/go.mod -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc

# protoc-gen-moat is built from this module, so it follows the source.
$(BIN)/protoc-gen-moat: $(GOFILES)
	$(GO) build -o $@ ./cmd/protoc-gen-moat

## generate: regenerate Go code from proto/ with buf and the pinned plugins
generate: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-moat
	find proto -name '*.pb.go' -delete
	$(BIN)/buf lint
	$(BIN)/buf generate
	$(GO) generate ./security/fields/internal/testpb

## check-generated: fail when generated code differs from a fresh generation
check-generated: generate
	@git diff --exit-code -- proto security/fields/internal/testpb || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto security/fields/internal/testpb)" || { git status --porcelain -- proto security/fields/internal/testpb; echo "generated files not committed"; exit 1; }

clean:
	rm -rf $(BIN) .dev
