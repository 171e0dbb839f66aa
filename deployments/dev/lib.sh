#!/usr/bin/env bash
# Shared settings and helpers of the local dev stack (make up / demo / down). Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEV="$ROOT/.dev"
BIN="$ROOT/bin"
SRC_PORT="${SKEIN_DEV_SRC_PORT:-55432}"
DST_PORT="${SKEIN_DEV_DST_PORT:-55433}"
# DEST=oracle: the destination is IvorySQL (Oracle mode, the stand-in for PolarDB-O); Skein writes
# to its Oracle-mode port DST_ORA_PORT, the comparison reads its PostgreSQL-mode port DST_PORT.
DEST="${DEST:-postgres}"
DST_ORA_PORT="${SKEIN_DEV_DST_ORA_PORT:-55434}"
TEMPORAL_PORT=7233
TEMPORAL_UI_PORT=8233
export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-127.0.0.1:$TEMPORAL_PORT}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; return; fi
  return 1
}

# as_pg runs a PostgreSQL server binary, as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

psql_src() { "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SRC_PORT" -U postgres "$@"; }
psql_dst() { "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DST_PORT" -U postgres "$@"; }

# ivory_bindir prints IvorySQL's bin folder: $SKEIN_IVORYSQL (an extracted folder or the
# tarball), else ../shared/ivorysql/*.tar.gz beside the repository, extracted once into .dev/.
ivory_bindir() {
  local src="${SKEIN_IVORYSQL:-}"
  if [ -z "$src" ]; then src=$(ls "$ROOT"/../shared/ivorysql/ivorysql-*.tar.gz 2>/dev/null | tail -1 || true); fi
  [ -n "$src" ] || return 1
  if [ -d "$src" ]; then
    for d in "$src/bin" "$src/ivorysql/bin"; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
    return 1
  fi
  if [ ! -x "$DEV/ivorysql/ivorysql/bin/initdb" ]; then
    mkdir -p "$DEV/ivorysql" && tar -xzf "$src" -C "$DEV/ivorysql" || return 1
    chmod 755 "$DEV" "$DEV/ivorysql"
  fi
  echo "$DEV/ivorysql/ivorysql/bin"
}

# start_cluster NAME PORT [postgres.conf lines...]: create once, start if not running. With
# CLUSTER_BINDIR set, that server's binaries (IvorySQL) make the cluster.
start_cluster() {
  local name=$1 port=$2; shift 2
  local bindir data
  bindir=${CLUSTER_BINDIR:-$(pg_bindir)} || die "PostgreSQL server binaries not found (run: make postgres)"
  data="$DEV/pg/$name"
  mkdir -p "$DEV/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    say "creating PostgreSQL cluster '$name' on port $port"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$DEV/pg"
    chmod 700 "$data"
    as_pg "$bindir/initdb" -D "$data" -U postgres -E UTF8 --no-locale --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    {
      echo "port = $port"
      echo "listen_addresses = '127.0.0.1'"
      echo "unix_socket_directories = ''"
      echo "max_wal_senders = 10"
      echo "max_replication_slots = 10"
      for line in "$@"; do echo "$line"; done
    } >> "$data/postgresql.auto.conf"
    # The admin user of these throwaway clusters is trusted on loopback; task users need passwords.
    sed -i '/^host/d' "$data/pg_hba.conf"
    echo "host all postgres 127.0.0.1/32 trust" >> "$data/pg_hba.conf"
    echo "host all all 127.0.0.1/32 scram-sha-256" >> "$data/pg_hba.conf"
  fi
  if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null ||
      die "PostgreSQL '$name' did not start: see $data/server.log (is port $port free?)"
  fi
}

stop_cluster() {
  local data="$DEV/pg/$1" bindir
  bindir=${CLUSTER_BINDIR:-$(pg_bindir)} || return 0
  if [ -f "$data/PG_VERSION" ] && as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "stopped PostgreSQL '$1'"
  fi
}

# start_destination starts the destination cluster of $DEST and prints the port Skein writes to.
start_destination() {
  if [ "$DEST" = oracle ]; then
    local bin
    bin=$(ivory_bindir) || die "DEST=oracle needs IvorySQL: set SKEIN_IVORYSQL to its tarball or folder (or keep ../shared/ivorysql/)"
    CLUSTER_BINDIR=$bin start_cluster destination-oracle "$DST_PORT" "ivorysql.port = $DST_ORA_PORT" \
      "ivorysql.listen_addresses = '127.0.0.1'" >&2
    echo "$DST_ORA_PORT"
  else
    start_cluster destination "$DST_PORT" >&2
    echo "$DST_PORT"
  fi
}

stop_oracle_destination() {
  local bin
  if [ -d "$DEV/pg/destination-oracle" ] && bin=$(ivory_bindir); then CLUSTER_BINDIR=$bin stop_cluster destination-oracle; fi
}

start_temporal() {
  mkdir -p "$DEV"
  if alive "$DEV/temporal.pid"; then return; fi
  [ -x "$BIN/temporal" ] || die "temporal CLI missing: run make tools"
  say "starting Temporal dev server (gRPC :$TEMPORAL_PORT, UI :$TEMPORAL_UI_PORT, state in .dev/temporal.db)"
  nohup "$BIN/temporal" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
    --db-filename "$DEV/temporal.db" --log-level warn --namespace default \
    --search-attribute SkeinPhase=Keyword --search-attribute SkeinSource=Keyword \
    --search-attribute SkeinDestination=Keyword >"$DEV/temporal.log" 2>&1 &
  echo $! >"$DEV/temporal.pid"
  for _ in $(seq 1 120); do
    if "$BIN/temporal" operator namespace describe default --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then return; fi
    alive "$DEV/temporal.pid" || die "Temporal dev server exited: see .dev/temporal.log"
    sleep 0.5
  done
  die "Temporal dev server not ready after 60s: see .dev/temporal.log"
}

start_worker() {
  mkdir -p "$DEV/secrets"
  if alive "$DEV/worker.pid"; then kill "$(cat "$DEV/worker.pid")"; sleep 1; fi
  say "starting skein-worker (logs in .dev/worker.log, secrets from .dev/secrets)"
  SKEIN_SECRETS_DIR="$DEV/secrets" nohup "$BIN/skein-worker" >"$DEV/worker.log" 2>&1 &
  echo $! >"$DEV/worker.pid"
  sleep 1
  alive "$DEV/worker.pid" || die "skein-worker exited: see .dev/worker.log"
}

stop_pid() {
  if alive "$DEV/$1.pid"; then
    kill "$(cat "$DEV/$1.pid")" && echo "stopped $1"
    for _ in $(seq 1 50); do alive "$DEV/$1.pid" || break; sleep 0.2; done
  fi
  rm -f "$DEV/$1.pid"
}
