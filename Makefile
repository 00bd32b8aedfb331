# pgtestproxy — run `make` to list the targets.
GO       ?= go
PKGS     ?= ./...
ARGS     ?=
FIDELITY_ARGS ?=
BENCHTIME ?= 2s
# release: the version stamped into the binaries and the archive names, and the targets.
# windows/amd64 is not among them: the embedded launcher needs flock and setsid.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
DIST      ?= dist
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
# staticcheck 2026.2.2, the release for Go 1.26; installed into bin/ on first use.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck

.DEFAULT_GOAL := help

STRESS_STEPS ?= 300
STRESS_COUNT ?= 3
# The stress suite (integration/stress_*, pool/stress_*): sessions and seconds of each
# scenario's load; make test runs it with 16 sessions for 3 s.
STRESS_SESSIONS ?= 500
STRESS_SECONDS ?= 60
# Fuzz targets as package:Target:budget; make fuzz runs each for its budget, a number of
# executions (about 10 s each on the development machine), or for FUZZTIME when set
# (FUZZTIME=1m). A count, not a duration, by default: Go 1.26's fuzzing coordinator can
# fail a target with "context deadline exceeded" and no failing input when a duration
# runs out (golang/go#75804, fixed in Go 1.27), which a count never does.
FUZZTIME ?=
FUZZ_TARGETS ?= ./proxy:FuzzSCRAM:50000x ./proxy:FuzzAdminConsole:40000x ./proxy:FuzzTxSession:5000x \
	./proxy:FuzzStartup:40000x ./proxy/internal/txmode:FuzzTxPlanQuery:15000x

.PHONY: help build run test stress fuzz bench bench-go fidelity lint fmt-check staticcheck release

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/pgtestproxy
	$(GO) build -o bin/pgtestproxy ./cmd/pgtestproxy

run: ## run the proxy on the embedded server (pass flags with ARGS="--migrations ./db/migrations")
	$(GO) run ./cmd/pgtestproxy serve $(ARGS)

test: ## run every test against real PostgreSQL, with the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

stress: ## run the stress tests long (STRESS_SESSIONS for STRESS_SECONDS, one scenario at a time; STRESS_STEPS per vanishing client, STRESS_COUNT times); make test runs them short
	PGTESTPROXY_STRESS_STEPS=$(STRESS_STEPS) $(GO) test -race -count=$(STRESS_COUNT) -timeout 30m -run 'Stress' -v ./proxy/
	PGTESTPROXY_STRESS_SESSIONS=$(STRESS_SESSIONS) PGTESTPROXY_STRESS_SECONDS=$(STRESS_SECONDS) \
		$(GO) test -count=1 -p 1 -parallel 1 -timeout 90m -run 'Stress' -v ./pool/ ./integration/

fuzz: ## run each fuzz target for its budget of executions, or FUZZTIME (seed corpora in testdata/fuzz)
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		budget=$(if $(FUZZTIME),$(FUZZTIME),$$budget); echo "== $$name ($$pkg, $$budget)"; \
		$(GO) test -count=1 -run "^$$name\$$" -fuzz "^$$name\$$" -fuzztime $$budget -parallel 2 $$pkg; done

bench: ## pgtestproxy vs pgtestdb, go-txdb, pgbouncer… in one run, one table (ARGS="--quick --json bench.json"; see BENCH.md)
	$(GO) build -C bench -o $(CURDIR)/bin/bench . && ./bin/bench $(ARGS)

bench-go: ## run the go test benchmarks; each prints its ratio to a baseline measured in the same run
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m $(PKGS)

fidelity: ## run pgx's own test suite directly and through each lease mode (FIDELITY_ARGS="--run TestConn --json out.json"); not part of test
	cd fidelity && $(GO) run . $(FIDELITY_ARGS)

lint: fmt-check staticcheck ## gofmt check, go vet and staticcheck (the product, bench/ and fidelity/), a darwin build
	$(GO) vet $(PKGS)
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/pgtestproxy
	cd bench && $(GO) vet ./...
	cd fidelity && $(GO) vet ./...

fmt-check: ## fail when a file is not gofmt-clean
	@out=$$(git ls-files '*.go' | xargs -r gofmt -l); if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi

staticcheck: $(STATICCHECK) ## run staticcheck (pinned: STATICCHECK_VERSION) over PKGS
	$(STATICCHECK) $(PKGS)

$(STATICCHECK):
	GOBIN=$(CURDIR)/$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

release: ## build dist/pgtestproxy_VERSION_OS_ARCH.tar.gz for PLATFORMS and dist/SHA256SUMS (DIST=dir), offline
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; name=pgtestproxy_$(VERSION)_$${os}_$${arch}; exe=; \
	  [ "$$os" != windows ] || exe=.exe; \
	  echo "== $$name"; mkdir -p $(DIST)/$$name; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
	    -o $(DIST)/$$name/pgtestproxy$$exe ./cmd/pgtestproxy; \
	  cp README.md $(DIST)/$$name/; \
	  if [ "$$os" = windows ]; then (cd $(DIST) && zip -qrX $$name.zip $$name); \
	  else tar -C $(DIST) --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(SOURCE_DATE_EPOCH) \
	    -cf - $$name | gzip -9n > $(DIST)/$$name.tar.gz; fi; \
	  rm -rf $(DIST)/$$name; \
	done
	cd $(DIST) && sha256sum pgtestproxy_* > SHA256SUMS && cat SHA256SUMS
