#!/usr/bin/env bash
# The local lab: two PostgreSQL clusters on loopback (both with wal_level=logical) and a moto
# server, plus a KEY=VALUE env file (.lab/env) that tests, benchmarks and the demo read.
#   scripts/lab.sh up     idempotent: starts what is not running
#   scripts/lab.sh down   stops everything and removes the data directories
#   scripts/lab.sh status
# Clusters run as the `postgres` user (initdb refuses root) with data outside the clone, which may sit under
# a mode-700 home the postgres user cannot enter.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ENV_FILE=$ROOT/.lab/env
key=$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
LAB_DIR=${LAB_DIR:-/var/tmp/aurora-to-ps-dms-lab-$key}
SOURCE_PORT=${LAB_SOURCE_PORT:-54331}
TARGET_PORT=${LAB_TARGET_PORT:-54332}
MOTO_PORT=${LAB_MOTO_PORT:-45111}
ROUTER_PORT=${LAB_ROUTER_PORT:-45112}
ADMIN_PASSWORD=lab-admin
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] || { echo "lab: PostgreSQL server binaries not found; run scripts/deps.sh" >&2; exit 2; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A lab CA and, per cluster, a server certificate it signs for localhost, so every TLS mode is
# exercised for real: verify-full succeeds only with the lab CA and the name `localhost` (not 127.0.0.1).
lab_ca() {
  [ -f "$LAB_DIR/ca.crt" ] && return
  openssl req -new -x509 -days 365 -nodes -subj "/CN=aurora-to-ps-dms lab CA" \
    -keyout "$LAB_DIR/ca.key" -out "$LAB_DIR/ca.crt" >/dev/null 2>&1
  chmod 644 "$LAB_DIR/ca.crt"
}

server_cert() { # data-dir
  local dir=$1
  lab_ca
  openssl req -new -nodes -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$LAB_DIR/ca.crt" -CAkey "$LAB_DIR/ca.key" -CAcreateserial \
    -days 365 -extfile "$dir/server.ext" -out "$dir/server.crt" >/dev/null 2>&1
  rm -f "$dir/server.csr" "$dir/server.ext"
  chmod 600 "$dir/server.key"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/server.key" "$dir/server.crt"
  return 0
}

cluster_up() { # name port extra-conf
  local name=$1 port=$2 conf=$3 dir=$LAB_DIR/$1
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$LAB_DIR" "$dir"
    chmod 700 "$dir"
    printf '%s\n' "$ADMIN_PASSWORD" >"$LAB_DIR/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres: "$LAB_DIR/pwfile"
    as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --pwfile="$LAB_DIR/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LAB_DIR/$name-initdb.log"
    rm -f "$LAB_DIR/pwfile"
    server_cert "$dir"
    cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
ssl = on
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
$conf
CONF
  fi
  # A cluster an older lab.sh made lacks the settings added since: append them, and restart a running
  # cluster so they apply (wal_level needs a restart).
  local line missing=""
  while IFS= read -r line; do
    [ -n "$line" ] && ! grep -qxF "$line" "$dir/postgresql.conf" && missing+="$line"$'\n'
  done <<<"$conf"
  if [ -n "$missing" ]; then
    printf '%s' "$missing" >>"$dir/postgresql.conf"
    if as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -m fast restart >/dev/null
    fi
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
  fi
}

moto_up() {
  if curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1; then return; fi
  mkdir -p "$ROOT/.lab"
  # moto's Step Functions interpreter calls Lambda at localhost:$MOTO_PORT: point it at the router.
  # AWS managed IAM policies exist in every real account; moto loads them only when asked (attaching
  # service-role/AmazonDMSVPCManagementRole to dms-vpc-role needs them).
  MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_PORT=$ROUTER_PORT nohup "$ROOT/.tools/py/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$ROOT/.lab/moto.log" 2>&1 &
  echo $! >"$ROOT/.lab/moto.pid"
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "lab: moto did not start on port $MOTO_PORT; see .lab/moto.log" >&2
  exit 2
}

router_up() {
  if curl -fsS "http://127.0.0.1:$ROUTER_PORT/moto-api/" >/dev/null 2>&1; then return; fi
  nohup "$ROOT/.tools/py/bin/python" "$ROOT/scripts/sfn_router.py" "$ROUTER_PORT" "http://127.0.0.1:$MOTO_PORT" \
    >"$ROOT/.lab/router.log" 2>&1 &
  echo $! >"$ROOT/.lab/router.pid"
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$ROUTER_PORT/moto-api/" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "lab: the Lambda router did not start on port $ROUTER_PORT; see .lab/router.log" >&2
  exit 2
}

write_env() {
  mkdir -p "$ROOT/.lab"
  cat >"$ENV_FILE.tmp" <<ENV
LAB_DIR=$LAB_DIR
SOURCE_HOST=127.0.0.1
SOURCE_PORT=$SOURCE_PORT
TARGET_HOST=127.0.0.1
TARGET_PORT=$TARGET_PORT
LAB_ADMIN_USER=postgres
LAB_ADMIN_PASSWORD=$ADMIN_PASSWORD
LAB_CA_CERT=$LAB_DIR/ca.crt
SOURCE_URL=postgres://postgres:$ADMIN_PASSWORD@127.0.0.1:$SOURCE_PORT/postgres?sslmode=disable
TARGET_URL=postgres://postgres:$ADMIN_PASSWORD@127.0.0.1:$TARGET_PORT/postgres?sslmode=disable
SOURCE_LOG=$LAB_DIR/source/server.log
TARGET_LOG=$LAB_DIR/target/server.log
MOTO_URL=http://127.0.0.1:$MOTO_PORT
LAMBDA_ROUTER_URL=http://127.0.0.1:$ROUTER_PORT
AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
CARGO_LAMBDA=$ROOT/.tools/lambda/bin/cargo-lambda
ENV
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

up() {
  [ -x "$ROOT/.tools/py/bin/moto_server" ] || { echo "lab: moto is not installed; run scripts/deps.sh" >&2; exit 2; }
  cluster_up source "$SOURCE_PORT" "wal_level = logical
max_replication_slots = 40
max_wal_senders = 40
wal_sender_timeout = 60s"
  # The target runs with wal_level = logical too: the way back (docs/fallback.md) decodes PlanetScale's
  # changes through a logical slot, and preflight's fallback.* checks create one.
  cluster_up target "$TARGET_PORT" "wal_level = logical
max_replication_slots = 40
max_logical_replication_workers = 16
max_worker_processes = 32
max_sync_workers_per_subscription = 4"
  moto_up
  router_up
  write_env
  echo "lab: up (source :$SOURCE_PORT, target :$TARGET_PORT, moto :$MOTO_PORT); env in .lab/env" >&2
}

down() {
  for name in source target; do
    if [ -f "$LAB_DIR/$name/PG_VERSION" ]; then
      as_pg "$PG_BIN/pg_ctl" -D "$LAB_DIR/$name" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  for pidfile in "$ROOT/.lab/moto.pid" "$ROOT/.lab/router.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$LAB_DIR" "$ROOT/.lab"
  echo "lab: down" >&2
}

status() {
  for name in source target; do
    if as_pg "$PG_BIN/pg_ctl" -D "$LAB_DIR/$name" status >/dev/null 2>&1; then echo "$name: running"; else echo "$name: stopped"; fi
  done
  if curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1; then echo "moto: running"; else echo "moto: stopped"; fi
  if curl -fsS "http://127.0.0.1:$ROUTER_PORT/moto-api/" >/dev/null 2>&1; then echo "router: running"; else echo "router: stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/lab.sh up|down|status" >&2; exit 2 ;;
esac
