# pgtestproxy — run `make` to list the targets.
GO       ?= go
PKGS     ?= ./...
ARGS     ?=
BENCHTIME ?= 2s

.DEFAULT_GOAL := help

.PHONY: help build run test bench bench-go lint fmt-check

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/pgtestproxy
	$(GO) build -o bin/pgtestproxy ./cmd/pgtestproxy

run: ## run the proxy on the embedded server (pass flags with ARGS="--migrations ./db/migrations")
	$(GO) run ./cmd/pgtestproxy serve $(ARGS)

test: ## run every test against real PostgreSQL, with the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

bench: ## pgtestproxy vs pgtestdb, go-txdb, pgbouncer… in one run, one table (ARGS="--quick --json bench.json"; see BENCH.md)
	$(GO) build -C bench -o $(CURDIR)/bin/bench . && ./bin/bench $(ARGS)

bench-go: ## run the go test benchmarks; each prints its ratio to a baseline measured in the same run
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m $(PKGS)

lint: fmt-check ## gofmt check plus go vet
	$(GO) vet $(PKGS)

fmt-check: ## fail when a file is not gofmt-clean
	@out=$$(git ls-files '*.go' | xargs -r gofmt -l); if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi
