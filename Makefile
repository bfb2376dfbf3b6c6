# chatd: make test runs everything CI runs; see README.md.
GO       ?= go
FUZZTIME ?= 3s
PKGS     := ./...
# Modules of their own, so the product's go.mod stays clean: comparisons
# with other WebSocket libraries (bench) and deployment tests (deploy).
SUBMODULES := bench deploy

.PHONY: all build test lint fmt-check vet unit interop fuzz bench run cluster

all: build

build:
	$(GO) build -o chatd ./cmd/chatd
	$(GO) build -o wsecho ./cmd/wsecho

# The test command of README.md and .ci/run.
test: lint unit interop fuzz

lint: fmt-check vet

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; echo "run: gofmt -w ."; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	@set -e; for m in $(SUBMODULES); do if [ -f $$m/go.mod ]; then echo "vet $$m"; (cd $$m && $(GO) vet ./...); fi; done

unit:
	$(GO) test -race -count=1 $(PKGS)

# Interop tests against other WebSocket libraries and a real Chromium
# (bench/), and the deployment tests (deploy/).
interop:
	@set -e; for m in $(SUBMODULES); do if [ -f $$m/go.mod ]; then (cd $$m && $(GO) test -race -count=1 ./...); fi; done

# A short pass over every fuzz target (FUZZTIME each); see scripts/fuzz.sh.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Microbenchmarks of the product, then the comparison benchmarks, then a
# short load run of chatbench against a real chatd (scripts/loadbench.sh).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	@if [ -f bench/go.mod ]; then cd bench && $(GO) test -run '^$$' -bench . -benchmem ./...; fi
	GO=$(GO) scripts/loadbench.sh

run:
	$(GO) run ./cmd/chatd

# Redis, three chatd nodes and HAProxy on loopback, without Docker.
cluster:
	scripts/cluster.sh
