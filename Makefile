# pgtestproxy — run `make` to list the targets.
GO       ?= go
PKGS     ?= ./...
ARGS     ?=
BENCHTIME ?= 2s

.DEFAULT_GOAL := help

STRESS_STEPS ?= 300
STRESS_COUNT ?= 3
FUZZTIME ?= 10s
# Fuzz targets as package:Target; make fuzz runs each for FUZZTIME.
FUZZ_TARGETS ?= ./proxy:FuzzSCRAM ./proxy:FuzzAdminConsole ./proxy:FuzzTxSession ./proxy:FuzzStartup \
	./proxy/internal/txmode:FuzzTxPlanQuery

.PHONY: help build run test bench lint fmt-check stress fuzz

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/pgtestproxy
	$(GO) build -o bin/pgtestproxy ./cmd/pgtestproxy

run: ## run the proxy on the embedded server (pass flags with ARGS="--migrations ./db/migrations")
	$(GO) run ./cmd/pgtestproxy serve $(ARGS)

test: ## run every test against real PostgreSQL, with the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

stress: ## run the stress tests long (STRESS_STEPS per client, STRESS_COUNT times); make test runs them short
	PGTESTPROXY_STRESS_STEPS=$(STRESS_STEPS) $(GO) test -race -count=$(STRESS_COUNT) -timeout 30m -run 'Stress' -v ./proxy/

fuzz: ## run each fuzz target for FUZZTIME (seed corpora in testdata/fuzz)
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -count=1 -run "^$$name\$$" -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel 2 $$pkg; done

bench: ## run the benchmarks; each prints its ratio to a baseline measured in the same run
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m $(PKGS)

lint: fmt-check ## gofmt check plus go vet
	$(GO) vet $(PKGS)

fmt-check: ## fail when a file is not gofmt-clean
	@out=$$(git ls-files '*.go' | xargs -r gofmt -l); if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi
