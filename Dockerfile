# syntax=docker/dockerfile:1
# Haven relay image: `docker build -t haven-relay .` (or `docker compose up`, see docker-compose.yml).
#
# With no configuration the relay runs zero-config (SQLite + blobs under /data, in-process
# pub/sub and rate limits). Point it at real engines with DATABASE_URL, REDIS_URL and the
# HAVEN_S3_* / AWS_* variables.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of the
# cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p haven-relay --locked \
 && install -D -m 0755 target/release/haven-relay /out/haven-relay

FROM debian:bookworm-slim
# ca-certificates: TLS to managed Postgres / Redis / S3. Nothing else: the healthcheck uses bash.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 haven \
 && useradd --system --uid 10001 --gid haven --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin haven \
 && mkdir -p /data \
 && chown haven:haven /data
COPY --from=builder /out/haven-relay /usr/local/bin/haven-relay

ENV HAVEN_LISTEN=0.0.0.0:8080 \
    HAVEN_METRICS_LISTEN=0.0.0.0:9464 \
    HAVEN_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080 9464
USER haven:haven

# No curl in the image: bash's /dev/tcp sends a plain HTTP/1.0 request to the relay's health
# endpoint on the port taken from HAVEN_LISTEN, and checks for a 200 status line.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${HAVEN_LISTEN##*:} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["/usr/local/bin/haven-relay"]
