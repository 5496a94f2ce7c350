# Shoal: one binary, a Swarm-style cluster. `make help` lists the targets.

GO        ?= go
BIN       := bin/shoal
# staticcheck runs through `go run`, so the module proxy (or the module cache)
# provides it (v0.8.2 handles Go 1.26; bump both together).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The binary: static (containerd's client needs no cgo), without containerd's
# plugin loader (no_dynamic_plugins) and without symbols (-s -w): 50.6 MB
# dynamic before, 25.8 MB static after.
BUILD_ENV   := CGO_ENABLED=0
BUILD_FLAGS := -trimpath -tags no_dynamic_plugins -ldflags '-s -w'
# Every package but e2e (real binaries on hosts, run by `make e2e`).
UNIT_PKGS = $$($(GO) list ./... | grep -v -E '/e2e$$')

.DEFAULT_GOAL := help
.PHONY: help build test unit e2e check bench bench-scale demo demo-stop

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/shoal (static, stripped, without the plugin loader) and bin/shoal-sim (hollow nodes)
	$(BUILD_ENV) $(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/shoal
	@if command -v file >/dev/null; then \
		file $(BIN) | grep -q 'statically linked' || { file $(BIN); echo "$(BIN) is not static"; exit 1; }; fi
	@echo "$(BIN): $$(stat -c %s $(BIN)) bytes"
	$(BUILD_ENV) $(GO) build $(BUILD_FLAGS) -o bin/shoal-sim ./cmd/shoal-sim

test: unit e2e ## unit tests, then the e2e scenarios (what CI runs)

unit: ## unit tests of every package but e2e, with the race detector
	$(GO) test -race $(UNIT_PKGS)

e2e: build ## multi-host scenarios on network namespaces (needs root)
	SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_SIM_BIN=$(CURDIR)/bin/shoal-sim $(GO) test -count=1 -v -timeout 45m ./e2e/

check: ## gofmt (must list nothing), go vet, go.mod tidy, staticcheck
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) ./...

bench: ## benchmarks of every package
	$(GO) test -run XXX -bench . ./...

bench-scale: build ## 3 managers + 1,000 hollow nodes: create, node loss, idle, raft size, failover (root; QUICK=1 for 100)
	SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_SIM_BIN=$(CURDIR)/bin/shoal-sim scripts/bench-scale.sh

demo: build ## 3 hosts on network namespaces, containerd each, a stack: web on a published port asking a backend by name (root)
	$(GO) build -o bin/pushimage ./testimage/pushimage
	GO=$(GO) SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_PUSHIMAGE=$(CURDIR)/bin/pushimage scripts/demo.sh

demo-stop: ## remove the demo cluster: processes, containers, mounts, namespaces
	scripts/demo-stop.sh
