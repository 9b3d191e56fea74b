# syntax=docker/dockerfile:1
# Dereth Tracker: one binary with the map UI and the migrations built in.
#
# Dependencies are cached with cargo-chef: `prepare` reduces the project to a recipe of its
# dependencies, `cook` builds only those (a layer reused until Cargo.toml or Cargo.lock change),
# then the real sources are built. No hand-made stub crate can be left behind in target/.

# --- build ---------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin dereth-tracker
COPY . .
# The commit for `--version` (the context has no .git): `--build-arg DERETH_COMMIT=$(git rev-parse --short=12 HEAD)`.
ARG DERETH_COMMIT=unknown
RUN cargo build --release --locked --bin dereth-tracker

# --- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# Only a user and the data directory: TLS roots for webhooks are built into the binary.
RUN groupadd --system --gid 10001 tracker \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home tracker
COPY --from=build /src/target/release/dereth-tracker /usr/local/bin/dereth-tracker
# The SQLite default lives here; mount a volume so data survives the container.
VOLUME /data
USER 10001:10001
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
