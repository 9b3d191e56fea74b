# syntax=docker/dockerfile:1
# Dereth Tracker: one static-ish binary with the map UI built in.

# --- build ---------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/deps/dereth_tracker* target/release/dereth-tracker*

# Then the sources (migrations and static/ are embedded at compile time).
COPY src ./src
COPY migrations ./migrations
COPY static ./static
RUN cargo build --release --locked \
 && strip target/release/dereth-tracker

# --- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home tracker
COPY --from=build /src/target/release/dereth-tracker /usr/local/bin/dereth-tracker
USER tracker
WORKDIR /data
ENV BIND_ADDR=0.0.0.0:8765 \
    DATABASE_URL=sqlite:///data/dereth-tracker.db \
    LOG_FORMAT=json
EXPOSE 8765
# The binary checks itself: exit 0 when /health answers 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["dereth-tracker", "healthcheck"]
ENTRYPOINT ["dereth-tracker"]
CMD ["serve"]
