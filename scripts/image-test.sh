#!/usr/bin/env bash
# Builds the Dockerfile's image for real with podman and runs it the way docker-compose.yml runs
# the tracker service: /health must answer 200, the image's HEALTHCHECK must pass, and telemetry
# sent to it must be stored in PostgreSQL. Called by scripts/test.sh.
#
# What is a stand-in here (no image can be pulled on this machine):
#   - debian:bookworm-slim is made locally with debootstrap (minbase variant), not pulled;
#   - rust:1.95-slim-bookworm is that base plus gcc, libc6-dev and this machine's own Rust
#     toolchain, not the official image;
#   - crates are fetched on the host and mounted into the build, which runs offline (TLS to the
#     registries does not work from inside a container here);
#   - the database is the test PostgreSQL on this machine (plain PostgreSQL, not TimescaleDB),
#     reached over the host network instead of the compose network.
# The Dockerfile itself, the build, the runtime image and its HEALTHCHECK are the real ones.
#
# Environment: TEST_DATABASE_URL (a role that may CREATE DATABASE), IMAGE_TEST_DIR (work folder
# for the base image root filesystems, default /var/tmp/dereth-image-test).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

: "${TEST_DATABASE_URL:?TEST_DATABASE_URL must name a PostgreSQL role that may CREATE DATABASE}"
WORK=${IMAGE_TEST_DIR:-/var/tmp/dereth-image-test}
IMAGE=localhost/dereth-tracker:test
CONTAINER=dereth-image-test
mkdir -p "$WORK"

if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
  || ! command -v debootstrap >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  log "installing podman, runc, debootstrap and curl"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap curl >/dev/null
fi

# This machine's kernel and sandbox want runc, cgroupfs and no default ulimits; a private
# configuration file leaves the system's podman settings alone.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"

if ! podman image exists docker.io/library/debian:bookworm-slim; then
  log "stand-in for debian:bookworm-slim (debootstrap --variant=minbase bookworm)"
  if [ ! -x "$WORK/rootfs-slim/bin/bash" ]; then
    as_root rm -rf "$WORK/rootfs-slim"
    as_root debootstrap --variant=minbase bookworm "$WORK/rootfs-slim" http://deb.debian.org/debian >/dev/null
  fi
  as_root tar -C "$WORK/rootfs-slim" -c . \
    | podman import --change 'CMD ["bash"]' - docker.io/library/debian:bookworm-slim >/dev/null
fi

if ! podman image exists docker.io/library/rust:1.95-slim-bookworm; then
  log "stand-in for rust:1.95-slim-bookworm (the base + gcc, libc6-dev, this machine's toolchain)"
  sysroot=$(rustc --print sysroot)
  as_root rm -rf "$WORK/rootfs-rust"
  as_root cp -a "$WORK/rootfs-slim" "$WORK/rootfs-rust"
  as_root chroot "$WORK/rootfs-rust" apt-get update -qq
  as_root chroot "$WORK/rootfs-rust" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
  as_root chroot "$WORK/rootfs-rust" apt-get clean
  as_root mkdir -p "$WORK/rootfs-rust/usr/local/rust"
  as_root cp -a "$sysroot/." "$WORK/rootfs-rust/usr/local/rust/"
  as_root rm -rf "$WORK/rootfs-rust/usr/local/rust/share/doc"
  as_root tar -C "$WORK/rootfs-rust" -c . | podman import \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - docker.io/library/rust:1.95-slim-bookworm >/dev/null
fi

log "crates for an offline build (the project's and cargo-chef's)"
cargo fetch --locked >/dev/null
cargo_home=${CARGO_HOME:-$HOME/.cargo}
chef_crate=$(find "$cargo_home/registry/cache" -name 'cargo-chef-0.1.78.crate' 2>/dev/null | head -n 1)
if [ -z "$chef_crate" ]; then
  # Fetches cargo-chef with its locked dependencies into the registry cache.
  cargo install --locked --version 0.1.78 cargo-chef --root "$WORK/chef" >/dev/null
fi
printf '[net]\noffline = true\n' >"$WORK/cargo-offline.toml"

log "podman build (the real Dockerfile, offline)"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
podman build --format docker --network=none \
  --build-arg DERETH_COMMIT="$commit" \
  -v "$cargo_home/registry:/usr/local/cargo/registry" \
  -v "$WORK/cargo-offline.toml:/usr/local/cargo/config.toml:ro" \
  -t "$IMAGE" .

log "the image says which commit it was built from"
version=$(podman run --rm "$IMAGE" --version)
echo "$version"
case "$version" in
  *"(commit $commit)"*) ;;
  *) echo "the image should name commit $commit" >&2; exit 1 ;;
esac

log "running the image with the compose environment"
db="dt_image_$$"
admin_psql() { psql "$TEST_DATABASE_URL" -v ON_ERROR_STOP=1 -qAtc "$1"; }
admin_psql "CREATE DATABASE $db" >/dev/null
base=${TEST_DATABASE_URL%%\?*}
creds_host=${base#postgres://}
creds_host=${creds_host#postgresql://}
user_pass=${creds_host%@*}
host_port=${creds_host##*@}
host_port=${host_port%%/*}
# A free port: a fixed one may be taken by another tracker on this machine, and /health would
# then answer from that process while the container failed to bind.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  podman rm -f -v "$CONTAINER" >/dev/null 2>&1 || true
  admin_psql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
podman rm -f -v "$CONTAINER" >/dev/null 2>&1 || true
# As compose gives them (environment + .env): password apart from the URL, empty optional values.
podman run -d --name "$CONTAINER" --network=host \
  -e DATABASE_URL="postgres://${user_pass%%:*}@$host_port/$db" \
  -e DATABASE_PASSWORD="${user_pass#*:}" \
  -e SHARED_SECRET=image-test-secret \
  -e SHARED_SECRET_PREVIOUS= \
  -e COMMAND_TOKEN= \
  -e RETENTION_TELEMETRY_DAYS=90 \
  -e RETENTION_SPAWNS_DAYS=7 \
  -e COMPRESS_AFTER_DAYS=7 \
  -e BIND_ADDR="127.0.0.1:$port" \
  -e LOG_FORMAT=json \
  -e SPOOL_DIR=/data/spool \
  "$IMAGE" >/dev/null

running() { [ "$(podman container inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" = "true" ]; }
healthy=""
for _ in $(seq 1 60); do
  running || break
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && running; then healthy=yes; break; fi
  sleep 1
done
if [ -z "$healthy" ]; then
  podman logs "$CONTAINER" | tail -n 40
  echo "the image never answered /health with 200" >&2
  exit 1
fi
echo "/health: $(curl -fsS "http://127.0.0.1:$port/health")"
podman healthcheck run "$CONTAINER" || {
  podman logs "$CONTAINER" | tail -n 40
  echo "the image's HEALTHCHECK failed" >&2
  exit 1
}
echo "HEALTHCHECK (dereth-tracker healthcheck inside the container): passed"

# Telemetry from simulated plugins is stored.
cargo run --quiet --locked --features bench --bin dereth-bench -- simulate --url "ws://127.0.0.1:$port/ws/position" \
  --secret image-test-secret --characters 3 --interval-ms 200 --duration-secs 4 >/dev/null
rows=$(psql "${TEST_DATABASE_URL%/*}/$db" -qAtc "SELECT count(*) FROM telemetry_events")
echo "telemetry rows stored by the container: $rows"
[ "$rows" -gt 0 ] || { echo "no telemetry stored" >&2; exit 1; }
echo "image test passed"
