# Shoal: one binary, a Swarm-style cluster. `make help` lists the targets.

GO        ?= go
BIN       := bin/shoal
# Packages whose unit tests run with the race detector.
RACE_PKGS := ./store/... ./manager/raft/...

.DEFAULT_GOAL := help
.PHONY: help build test unit e2e check bench bench-scale demo demo-stop

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/shoal and bin/shoal-sim (the hollow-node simulator)
	$(GO) build -o $(BIN) ./cmd/shoal
	$(GO) build -o bin/shoal-sim ./cmd/shoal-sim

test: unit e2e ## unit tests, then the e2e scenarios (what CI runs)

unit: ## unit tests: -race for store and raft, plain for the rest
	$(GO) test -race $(RACE_PKGS)
	$(GO) test $$($(GO) list ./... | grep -v -E '/e2e$$|/store(/|$$)|/manager/raft(/|$$)')

e2e: build ## multi-host scenarios on network namespaces (needs root)
	SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_SIM_BIN=$(CURDIR)/bin/shoal-sim $(GO) test -count=1 -v -timeout 15m ./e2e/

check: ## gofmt (must list nothing) and go vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: ## benchmarks of every package
	$(GO) test -run XXX -bench . ./...

bench-scale: build ## 3 managers + 1,000 hollow nodes: create, node loss, idle, raft size, failover (root; QUICK=1 for 100)
	SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_SIM_BIN=$(CURDIR)/bin/shoal-sim scripts/bench-scale.sh

demo: build ## 3 hosts on network namespaces, containerd each, a 6-replica web service (root)
	$(GO) build -o bin/pushimage ./testimage/pushimage
	GO=$(GO) SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_PUSHIMAGE=$(CURDIR)/bin/pushimage scripts/demo.sh

demo-stop: ## remove the demo cluster: processes, containers, mounts, namespaces
	scripts/demo-stop.sh
