# metlo-appliance — `make help` lists the targets.
GO        ?= go
BIN       ?= bin/metlo-appliance
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git describe --always --dirty --abbrev=40 --exclude='*' 2>/dev/null)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
FUZZTIME  ?= 10s
BENCHTIME ?= 1s

.DEFAULT_GOAL := help
.PHONY: help build run test test-short bench bench-compare fuzz generate generate-check lint clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build the binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/metlo-appliance

run: ## run the collector on the bundled sample capture (traces to stdout, summary to stderr)
	$(GO) run ./cmd/metlo-appliance collect --sample

test: ## run every test (root-only ones skip without root) and a short fuzz of each parser
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

test-short: ## unit tests only, no root, no lab
	$(GO) test -short -count=1 ./...

bench: ## run the benchmarks (single core and all cores)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -cpu 1,$$(nproc) ./...

bench-compare: ## time collect --pcap against tshark on the same synthetic captures (HTTP/1.1, HTTP/2)
	test/bench/compare-tshark.sh
	test/bench/compare-tshark-http2.sh

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

generate: ## regenerate the eBPF objects and Go bindings (needs clang)
	$(GO) generate ./...

generate-check: generate ## fail when committed generated files differ from a fresh generate
	git diff --exit-code -- bpf datapath

lint: ## gofmt, go vet, staticcheck and shellcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@if command -v shellcheck >/dev/null; then shellcheck $$(git ls-files '*.sh') .ci/run; else echo "shellcheck not installed: scripts not checked"; fi

clean: ## remove build output
	rm -rf bin
