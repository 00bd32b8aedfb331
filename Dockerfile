# pgtestproxy images. Two targets:
#
#   docker build -t pgtestproxy .                    the default (last) target: the proxy plus
#                                                    Debian's PostgreSQL server, embedded mode
#   docker build --target slim -t pgtestproxy:slim . the proxy alone, for --upstream
#
#   docker build --build-arg VERSION=v1.2.3 …        what `pgtestproxy version` prints
#
# Run (README, "Docker"): a non-loopback listen needs a password or the explicit opt-out,
#   docker run --rm -p 127.0.0.1:6543:6543 --tmpfs /var/lib/pgtestproxy:mode=1777 \
#     -e PGTESTPROXY_PASSWORD=secret -v "$PWD/migrations:/migrations:ro" pgtestproxy
#
# Bookworm's PostgreSQL is 15, the major version the project's own tests run against.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

# ---- build: one static binary, no cgo, no local paths in it
FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/pgtestproxy ./cmd/pgtestproxy \
 && mkdir /out/migrations

# ---- slim: the proxy alone; give it --upstream / PGTESTPROXY_UPSTREAM
FROM gcr.io/distroless/static-debian12:nonroot AS slim
COPY --from=build /out/pgtestproxy /usr/local/bin/pgtestproxy
# An empty /migrations (an empty default template) until one is mounted there.
COPY --from=build /out/migrations /migrations
ENV PGTESTPROXY_LISTEN=0.0.0.0:6543 \
    PGTESTPROXY_MIGRATIONS=/migrations
EXPOSE 6543
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pgtestproxy"]
CMD ["serve"]

# ---- default: the proxy with an embedded PostgreSQL (no --upstream needed)
FROM debian:${DEBIAN_RELEASE}-slim AS embedded
# PostgreSQL refuses to run as root, so the image runs as postgres, with a fixed uid/gid
# (999) made before the package does it, so volume and tmpfs ownership can be planned.
# postgresql-common first, to switch off the package's own cluster: the proxy runs initdb
# itself, in its data directory.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 postgres \
 && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends postgresql ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/pgtestproxy \
 && install -d -o postgres -g postgres -m 0755 /migrations
COPY --from=build /out/pgtestproxy /usr/local/bin/pgtestproxy
# The data directory: /var/lib/pgtestproxy is where a tmpfs belongs
# (docker run --tmpfs /var/lib/pgtestproxy:mode=1777); without one the data lives in the
# container's writable layer and goes with the container.
# The listen address is every interface of the container, which the proxy accepts only
# with PGTESTPROXY_PASSWORD (clients then log in with SCRAM-SHA-256) or with the explicit
# opt-out PGTESTPROXY_ALLOW_NON_LOOPBACK=true: neither is set here on purpose.
ENV PGTESTPROXY_LISTEN=0.0.0.0:6543 \
    PGTESTPROXY_MIGRATIONS=/migrations \
    PGTESTPROXY_DATA_DIR=/var/lib/pgtestproxy/data
EXPOSE 6543
USER 999:999
# Alive and accepting clients: pg_isready against the admin console (no clone is leased).
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=5 \
  CMD pg_isready -q -h 127.0.0.1 -p "${PGTESTPROXY_LISTEN##*:}" -d pgtestproxy || exit 1
ENTRYPOINT ["/usr/local/bin/pgtestproxy"]
CMD ["serve"]
