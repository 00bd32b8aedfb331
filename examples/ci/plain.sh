#!/usr/bin/env bash
# Any CI job (or a laptop) with Go and PostgreSQL's server binaries installed
# (Debian/Ubuntu: apt-get install -y postgresql): pgtestproxy starts its own
# PostgreSQL, runs the tests against it and exits with their status.
set -euo pipefail
go install github.com/pgtestproxy/pgtestproxy/cmd/pgtestproxy@latest
export PATH="$(go env GOPATH)/bin:$PATH"
pgtestproxy run --migrations ./db/migrations -- make test
