# pgtestproxy — run `make` to list the targets.
GO       ?= go
PKGS     ?= ./...
ARGS     ?=
FIDELITY_ARGS ?=
BENCHTIME ?= 2s

.DEFAULT_GOAL := help

.PHONY: help build run test bench lint fmt-check fidelity

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/pgtestproxy
	$(GO) build -o bin/pgtestproxy ./cmd/pgtestproxy

run: ## run the proxy on the embedded server (pass flags with ARGS="--migrations ./db/migrations")
	$(GO) run ./cmd/pgtestproxy serve $(ARGS)

test: ## run every test against real PostgreSQL, with the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

bench: ## run the benchmarks; each prints its ratio to a baseline measured in the same run
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m $(PKGS)

fidelity: ## run pgx's own test suite directly and through each lease mode (FIDELITY_ARGS="--run TestConn --json out.json"); not part of test
	cd fidelity && $(GO) run . $(FIDELITY_ARGS)

lint: fmt-check ## gofmt check plus go vet
	$(GO) vet $(PKGS)

fmt-check: ## fail when a file is not gofmt-clean
	@out=$$(git ls-files '*.go' | xargs -r gofmt -l); if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi
