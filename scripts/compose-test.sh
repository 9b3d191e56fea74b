#!/usr/bin/env bash
# Runs docker-compose.yml (and, unless COMPOSE_TEST_CLUSTER=0, docker-compose.cluster.yml) for
# real with podman-compose, as an operator would with `docker compose up`: the tracker waits
# for the database, turns healthy, stores simulated telemetry, loses nothing across `restart`
# and keeps its data across `down`/`up` (named volumes). Called by scripts/test.sh after
# scripts/image-test.sh, whose tracker image and base image it reuses.
#
# What is a stand-in here (no image can be pulled on this machine):
#   - timescale/timescaledb:2.17.2-pg17 is Debian's PostgreSQL 15 without TimescaleDB (the
#     tracker then logs that it runs without hypertables), with a small entrypoint doing what the
#     official image's does: POSTGRES_USER/PASSWORD/DB on first start, the scripts in
#     /docker-entrypoint-initdb.d, password logins over the network;
#   - haproxy:2.6 is Debian's haproxy 2.6 started as the official image starts it;
#   - the tracker image is the one scripts/image-test.sh built from the real Dockerfile (built
#     offline there), tagged with the name compose gives it, so compose does not build again;
#   - podman 4.3 cannot wait for a container's health (`podman wait --condition=healthy` came
#     in 4.6), so `depends_on: condition: service_healthy` orders the start but does not wait:
#     the tracker's own wait for its database (DATABASE_WAIT_SECS) is what is shown here. Nor is
#     there systemd to run healthchecks on a timer: this script runs `podman healthcheck run`
#     itself when it checks a container's health.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
fail() { echo "compose test: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

WORK=${IMAGE_TEST_DIR:-/var/tmp/dereth-image-test}
TRACKER_IMAGE=localhost/dereth-tracker:test
DB_IMAGE=docker.io/timescale/timescaledb:2.17.2-pg17
PROXY_IMAGE=docker.io/library/haproxy:2.6
export CONTAINERS_CONF="$WORK/containers.conf"
[ -f "$CONTAINERS_CONF" ] && podman image exists "$TRACKER_IMAGE" \
  || fail "run scripts/image-test.sh first (it builds the tracker image and the base image)"

if ! command -v podman-compose >/dev/null 2>&1; then
  log "installing podman-compose"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman-compose >/dev/null
fi
echo "$(podman-compose version 2>/dev/null | grep -m1 'podman-compose.* version' | sed 's/podman-composer/podman-compose/')"

# A root filesystem from the debootstrapped base with Debian packages added, imported as IMAGE.
stand_in() {
  local image=$1 dir=$2 packages=$3
  shift 3
  if podman image exists "$image"; then return; fi
  log "stand-in for $image (Debian bookworm + $packages)"
  as_root rm -rf "$WORK/$dir"
  as_root cp -a "$WORK/rootfs-slim" "$WORK/$dir"
  # No services start inside the chroot, and no default PostgreSQL cluster is made.
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$WORK/$dir/usr/sbin/policy-rc.d" >/dev/null
  as_root chmod +x "$WORK/$dir/usr/sbin/policy-rc.d"
  as_root mkdir -p "$WORK/$dir/etc/postgresql-common"
  echo 'create_main_cluster = false' | as_root tee "$WORK/$dir/etc/postgresql-common/createcluster.conf" >/dev/null
  as_root chroot "$WORK/$dir" apt-get update -qq
  # shellcheck disable=SC2086
  as_root chroot "$WORK/$dir" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
  as_root chroot "$WORK/$dir" apt-get clean
  as_root rm -f "$WORK/$dir/usr/sbin/policy-rc.d"
  if [ -n "${STAND_IN_ENTRYPOINT:-}" ]; then
    printf '%s\n' "$STAND_IN_ENTRYPOINT" | as_root tee "$WORK/$dir/usr/local/bin/docker-entrypoint.sh" >/dev/null
    as_root chmod +x "$WORK/$dir/usr/local/bin/docker-entrypoint.sh"
  fi
  local changes=()
  for change in "$@"; do changes+=(--change "$change"); done
  as_root tar -C "$WORK/$dir" -c . | podman import "${changes[@]}" - "$image" >/dev/null
}

# What the official postgres image's entrypoint does, for the parts compose relies on.
STAND_IN_ENTRYPOINT=$(cat <<'EOF'
#!/bin/bash
set -euo pipefail
export PATH=/usr/lib/postgresql/15/bin:$PATH
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_pg() { runuser -u postgres -- "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  printf '%s' "$POSTGRES_PASSWORD" >/tmp/pwfile
  chown postgres /tmp/pwfile
  as_pg initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  # A temporary server on the socket only, for the init scripts (as the official image does).
  as_pg pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$db" != postgres ]; then as_pg psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -qc "CREATE DATABASE \"$db\""; fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in *.sql) echo "running $f"; as_pg psql -v ON_ERROR_STOP=1 -U "$user" -d "$db" -qf "$f" ;; esac
  done
  as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "database initialised"
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='*'
EOF
)
STAND_IN_ENTRYPOINT=$STAND_IN_ENTRYPOINT stand_in "$DB_IMAGE" rootfs-postgres "postgresql-15" \
  'ENV PGDATA=/var/lib/postgresql/data' 'STOPSIGNAL SIGINT' \
  'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'

# The tracker image under the name compose gives a built service (<project>_<service>).
tag_tracker() { podman tag "$TRACKER_IMAGE" "localhost/${1}_${2}"; }

# A project folder holding the repository's compose files as they are, and an .env made from
# .env.example with the secrets set.
PROJECT_DIR=$(mktemp -d)
cp docker-compose.yml docker-compose.cluster.yml "$PROJECT_DIR/"
cp -r deploy "$PROJECT_DIR/deploy"
sed -e 's/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=compose-test-db-p@ss:word/' \
  -e 's/^SHARED_SECRET=.*/SHARED_SECRET=compose-test-secret/' \
  -e 's/^CLUSTER_KEY=.*/CLUSTER_KEY=compose-test-cluster-key-0123456789/' \
  -e 's/^BACKUP_EVERY=.*/BACKUP_EVERY=10s/' \
  .env.example >"$PROJECT_DIR/.env"
cargo build --quiet --locked --features bench --bin dereth-bench --bin dereth-tracker
BENCH=$PWD/target/debug/dereth-bench
TRACKER=$PWD/target/debug/dereth-tracker

PROJECT=""
COMPOSE_FILE=""
compose() { (cd "$PROJECT_DIR" && podman-compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"); }
cleanup() {
  if [ -n "$PROJECT" ]; then
    compose down -v >/dev/null 2>&1 || true
    podman volume ls -q | grep "^${PROJECT}_" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
    # podman-compose 1.0.3 leaves the project's network behind.
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  fi
  rm -rf "$PROJECT_DIR"
}
trap cleanup EXIT

port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null; }
port_free 8765 || fail "127.0.0.1:8765 (the port the compose files publish) is taken on this machine"

db_rows() {
  podman exec "${PROJECT}_db_1" psql -U dereth -d dereth -qAtc "SELECT count(*) FROM telemetry_events"
}
# Waits until a container reports healthy, running its healthcheck as systemd's timer would.
wait_healthy() {
  local container=$1 seconds=$2
  for _ in $(seq 1 "$seconds"); do
    if podman healthcheck run "$container" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  tail -n 30 "$(logs_of "$container")"
  fail "$container did not turn healthy within ${seconds}s"
}
# `podman-compose up -d`, then waits until each named service's container is healthy.
up_healthy() {
  local log_name=$1 service; shift
  compose up -d >"$PROJECT_DIR/$log_name" 2>&1 || { cat "$PROJECT_DIR/$log_name"; fail "podman-compose up failed ($log_name)"; }
  for service in "$@"; do wait_healthy "${PROJECT}_${service}_1" 120; done
}
wait_http_ok() {
  for _ in $(seq 1 "$2"); do
    if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  fail "$1 did not answer 200 within ${2}s"
}
# Simulated plugins through the published port; prints how many frames they sent.
simulate() {
  "$BENCH" simulate --url ws://127.0.0.1:8765/ws/position --secret compose-test-secret \
    --characters "$1" --interval-ms 200 --duration-secs "$2"
}
# A container's whole log (every run of it) in a file, to grep without a pipe (grep -q closing
# the pipe early would fail `podman logs` under pipefail).
logs_of() { podman logs "$1" >"$PROJECT_DIR/$1.log" 2>&1; echo "$PROJECT_DIR/$1.log"; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }

# ---------------------------------------------------------------------------------------------
log "docker-compose.yml: up"
PROJECT=dtcompose
COMPOSE_FILE=docker-compose.yml
tag_tracker "$PROJECT" tracker
started=$(date +%s)
up_healthy up.log db tracker
wait_http_ok http://127.0.0.1:8765/health 30
echo "db and tracker healthy $(( $(date +%s) - started ))s after up; /health: $(curl -fsS http://127.0.0.1:8765/health)"
log_file=$(logs_of "${PROJECT}_tracker_1")
grep -q '"database ready"' "$log_file" || fail "the tracker never logged that its database is ready"
if grep -q 'database not reachable yet' "$log_file"; then
  echo "the tracker started before the database accepted connections, and waited for it"
fi
grep -m1 'TimescaleDB' "$log_file" | cut -c1-200 || fail "the tracker did not say whether it uses TimescaleDB"

log "simulated plugins stream; the tracker is restarted in the middle (podman-compose restart tracker)"
simulate 10 20 >"$PROJECT_DIR/sim1.json" &
sim=$!
sleep 8
before_restart=$(db_rows)
compose restart tracker >/dev/null 2>&1 || fail "podman-compose restart tracker failed"
wait_healthy "${PROJECT}_tracker_1" 60
wait "$sim" || fail "the simulator failed"
sent=$(json_field telemetry_sent <"$PROJECT_DIR/sim1.json")
connects=$(json_field connects <"$PROJECT_DIR/sim1.json")
sleep 3
stored=$(db_rows)
echo "telemetry sent: $sent over $connects connections; stored: $stored (before the restart: $before_restart)"
[ "$sent" -gt 0 ] && [ "$before_restart" -gt 0 ] || fail "nothing was streamed"
[ "$connects" -gt 10 ] || fail "the plugins did not reconnect after the restart ($connects connections)"
[ "$stored" = "$sent" ] || fail "stored $stored telemetry rows of $sent sent across the restart"
grep -q '"stopped cleanly"' "$(logs_of "${PROJECT}_tracker_1")" \
  || fail "the restarted tracker did not log a clean stop"

log "podman-compose down, then up: the data is still there (named volumes)"
compose down >/dev/null 2>&1 || fail "podman-compose down failed"
podman container exists "${PROJECT}_tracker_1" && fail "down left the tracker container"
up_healthy up2.log db tracker
after=$(db_rows)
echo "telemetry rows after down/up: $after (before: $stored)"
[ "$after" = "$stored" ] || fail "down/up changed the stored rows: $stored -> $after"
simulate 3 4 >/dev/null
more=$(db_rows)
[ "$more" -gt "$after" ] || fail "the tracker stores nothing after down/up"
echo "and it keeps storing: $more rows"

log "the tracker's process killed (SIGKILL, as by the OOM killer): its restart policy brings it back"
# From outside podman: `podman kill` counts as stopped by the user, which unless-stopped honours.
kill -KILL "$(podman container inspect -f '{{.State.Pid}}' "${PROJECT}_tracker_1")"
sleep 2
wait_healthy "${PROJECT}_tracker_1" 60
echo "restarted by podman ($(podman container inspect -f '{{.RestartCount}}' "${PROJECT}_tracker_1") restart(s)); rows: $(db_rows)"
[ "$(db_rows)" = "$more" ] || fail "rows changed across the kill"

log "scheduled backups (BACKUP_DIR=/data/backups from .env.example, BACKUP_EVERY=10s here) restore"
# One started after every row was stored (names carry their start time, UTC).
since="/data/backups/dereth-$(date -u +%Y%m%dT%H%M%SZ).backup"
archive=""
for _ in $(seq 1 40); do
  newest=$(podman exec "${PROJECT}_tracker_1" sh -c 'ls /data/backups/dereth-*.backup 2>/dev/null' | tail -n 1)
  if [[ "$newest" > "$since" ]]; then archive=$newest; break; fi
  sleep 1
done
[ -n "$archive" ] || fail "no scheduled backup in the tracker's volume"
podman cp "${PROJECT}_tracker_1:$archive" "$PROJECT_DIR/latest.backup"
DATABASE_URL="sqlite://$PROJECT_DIR/restored.db" "$TRACKER" restore --from "$PROJECT_DIR/latest.backup" \
  >"$PROJECT_DIR/restore.txt" || { cat "$PROJECT_DIR/restore.txt"; fail "the scheduled backup does not restore"; }
restored=$(awk '$1 == "telemetry_events" {print $2}' "$PROJECT_DIR/restore.txt")
echo "$(basename "$archive") restores into SQLite: $restored telemetry rows (the database: $(db_rows))"
[ "$restored" = "$more" ] || fail "the scheduled backup holds $restored telemetry rows of $more"
compose down -v >/dev/null 2>&1 || true
podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
echo "compose test (single instance) passed in $(( $(date +%s) - started ))s"

if [ "${COMPOSE_TEST_CLUSTER:-1}" = "0" ]; then
  echo "two-instance variant skipped (COMPOSE_TEST_CLUSTER=0)"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
stand_in "$PROXY_IMAGE" rootfs-haproxy "haproxy" 'STOPSIGNAL SIGUSR1' \
  'ENTRYPOINT ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'

log "docker-compose.cluster.yml: up (two trackers behind HAProxy, one database)"
PROJECT=dtcluster
COMPOSE_FILE=docker-compose.cluster.yml
tag_tracker "$PROJECT" tracker-a
tag_tracker "$PROJECT" tracker-b
started=$(date +%s)
up_healthy up.log db tracker-a tracker-b
wait_http_ok http://127.0.0.1:8765/health 60
echo "both trackers healthy and the proxy answering $(( $(date +%s) - started ))s after up"

log "rolling restart while plugins stream through the proxy: tracker-a, then tracker-b"
simulate 10 30 >"$PROJECT_DIR/sim2.json" &
sim=$!
sleep 6
for service in tracker-a tracker-b; do
  compose restart "$service" >/dev/null 2>&1 || fail "podman-compose restart $service failed"
  wait_healthy "${PROJECT}_${service}_1" 60
  sleep 6
done
wait "$sim" || fail "the simulator failed"
sent=$(json_field telemetry_sent <"$PROJECT_DIR/sim2.json")
connects=$(json_field connects <"$PROJECT_DIR/sim2.json")
sleep 3
stored=$(db_rows)
echo "telemetry sent: $sent over $connects connections; stored: $stored"
[ "$sent" -gt 0 ] || fail "nothing was streamed"
[ "$stored" = "$sent" ] || fail "stored $stored telemetry rows of $sent sent across the rolling restart"
for service in tracker-a tracker-b; do
  grep -q '"stopped cleanly"' "$(logs_of "${PROJECT}_${service}_1")" || fail "$service did not stop cleanly"
done

log "podman-compose down, then up: the data is still there"
compose down >/dev/null 2>&1 || fail "podman-compose down failed"
up_healthy up2.log db tracker-a tracker-b
after=$(db_rows)
[ "$after" = "$stored" ] || fail "down/up changed the stored rows: $stored -> $after"
echo "telemetry rows after down/up: $after"
compose down -v >/dev/null 2>&1 || true
echo "compose test (two instances) passed in $(( $(date +%s) - started ))s"
