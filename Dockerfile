# pgtestproxy with an embedded PostgreSQL. Build: docker build -t pgtestproxy .
# Run:   docker run --rm -p 6543:6543 -v "$PWD/db/migrations:/migrations:ro" pgtestproxy
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/pgtestproxy ./cmd/pgtestproxy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/pgtestproxy /usr/local/bin/pgtestproxy
USER postgres
ENV PGTESTPROXY_DATA_DIR=/tmp/pgtestproxy/pg \
    PGTESTPROXY_LISTEN=0.0.0.0:6543 \
    PGTESTPROXY_ALLOW_NON_LOOPBACK=true \
    PGTESTPROXY_MIGRATIONS=/migrations
EXPOSE 6543
ENTRYPOINT ["pgtestproxy"]
CMD ["serve"]
