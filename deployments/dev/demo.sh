#!/usr/bin/env bash
# make demo: the main job on an embedded local stack. Starts Temporal, two PostgreSQL clusters and a
# worker, loads a sample database, syncs it (schema + full + incremental), makes live changes,
# and compares both sides row by row. Safe to run again. DEST=oracle syncs into IvorySQL's
# Oracle-mode port instead (deployments/dev/demo-task-oracle.yaml).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
SKEIN="$BIN/skein"
TASK=demo

start_cluster source "$SRC_PORT" "wal_level = logical"
# Both kinds of destination listen on DST_PORT: stop the other one.
if [ "$DEST" = oracle ]; then stop_cluster destination; else stop_oracle_destination; fi
write_port=$(start_destination)
SPEC=deployments/dev/demo-task.yaml
[ "$DEST" = oracle ] && SPEC=deployments/dev/demo-task-oracle.yaml
start_temporal
start_worker

# A task left by an earlier run: release it so its slot goes away, then start from scratch.
if phase=$("$SKEIN" status "$TASK" --json 2>/dev/null | sed -n 's/.*"phase":"\([a-z_]*\)".*/\1/p') && [ -n "$phase" ] &&
   [ "$phase" != released ] && [ "$phase" != finished ] && [ "$phase" != precheck_failed ]; then
  say "releasing the task of an earlier demo run"
  "$SKEIN" release "$TASK" >/dev/null || true
  for _ in $(seq 1 60); do
    # A task whose release failed (its old destination is gone) has ended: stop waiting.
    p=$("$SKEIN" status "$TASK" --json 2>/dev/null | sed -n 's/.*"phase":"\([a-z_]*\)".*/\1/p') || break
    [ "$p" = released ] && break
    sleep 1
  done
fi
# Whatever still runs (a task whose status cannot be read, or whose release could not finish
# because its old destination is gone) ends here; its slot is dropped below.
"$BIN/temporal" workflow terminate --workflow-id "$TASK" --reason "make demo restarts" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1 || true

say "loading the sample database into the source (shop)"
psql_src -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'skein_demo' AND NOT active" >/dev/null
psql_src -d postgres -c "DROP DATABASE IF EXISTS shop WITH (FORCE)" -c "CREATE DATABASE shop" >/dev/null
psql_dst -d postgres -c "DROP DATABASE IF EXISTS shop_copy WITH (FORCE)" -c "CREATE DATABASE shop_copy" >/dev/null
psql_src -d shop -f deployments/dev/sample.sql >/dev/null

# Task accounts with random passwords, handed to the worker as secrets (never in the spec).
mkdir -p "$DEV/secrets"
for side in src dst; do
  pw=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s' "$pw" >"$DEV/secrets/demo-$side"
  chmod 600 "$DEV/secrets/demo-$side"
  run=psql_$side
  $run -d postgres -v pw="$pw" -v role="skein_$side" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN SUPERUSER REPLICATION', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" PASSWORD :'pw';
SQL
done

say "starting the task from $SPEC (destination port $write_port)"
"$SKEIN" start -f "$SPEC" >/dev/null

say "waiting for the task to reach incremental"
deadline=$((SECONDS + 300))
last=""
while :; do
  out=$("$SKEIN" status "$TASK" 2>&1) || true
  if [ "$out" != "$last" ]; then printf '\033[2m%s\033[0m\n\n' "$out"; last=$out; fi
  phase=$(sed -n 's/^task [^ ]*  phase \([a-z_]*\).*/\1/p' <<<"$out" | head -1)
  case "$phase" in
    incremental) break ;;
    failed|precheck_failed) die "the task is $phase (see above and .dev/worker.log)" ;;
  esac
  [ $SECONDS -lt $deadline ] || die "the task did not reach incremental in 5 minutes (see .dev/worker.log)"
  sleep 2
done

say "making live changes on the source (deployments/dev/live-changes.sql)"
psql_src -d shop -f deployments/dev/live-changes.sql >/dev/null

table_rows() { # side table -> every row as text, in a fixed order
  local run=psql_$1
  $run -d "$2" -At -c "COPY (SELECT t::text FROM $3 t ORDER BY 1) TO STDOUT"
}
tables=$(psql_src -d shop -At -c "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'shop' ORDER BY 1")

say "waiting until the changes are on the destination, then comparing every row"
deadline=$((SECONDS + 120))
while :; do
  ok=1
  report=""
  for t in $tables; do
    s=$(table_rows src shop "$t" | md5sum | cut -d' ' -f1)
    d=$(table_rows dst shop_copy "$t" 2>/dev/null | md5sum | cut -d' ' -f1)
    n=$(psql_src -d shop -At -c "SELECT count(*) FROM $t")
    if [ "$s" = "$d" ]; then
      report+=$(printf '  %-20s %6s rows  identical' "$t" "$n")$'\n'
    else
      ok=0
      report+=$(printf '  %-20s %6s rows  DIFFERENT' "$t" "$n")$'\n'
    fi
  done
  [ $ok = 1 ] && break
  [ $SECONDS -lt $deadline ] || break
  sleep 1
done

"$SKEIN" status "$TASK"
echo
printf '%s' "$report"
echo
cat <<MSG
Source:      postgres://skein_src@127.0.0.1:$SRC_PORT/shop        (password: .dev/secrets/demo-src)
Destination: postgres://skein_dst@127.0.0.1:$write_port/shop_copy   (password: .dev/secrets/demo-dst)
MSG
if [ "$DEST" = oracle ]; then
  cat <<MSG
             IvorySQL in Oracle mode on :$DST_ORA_PORT (PostgreSQL mode on :$DST_PORT); the rows above were
             read through the PostgreSQL-mode port. From the Oracle-mode port, by their usual names:
MSG
  "$(pg_bindir)/psql" -X -h 127.0.0.1 -p "$DST_ORA_PORT" -U postgres -d shop_copy -c "SELECT count(*) AS orders FROM shop.orders" |
    sed 's/^/             /'
fi
cat <<MSG
Temporal UI: http://localhost:$TEMPORAL_UI_PORT/namespaces/default/workflows/$TASK
The task keeps streaming: change the source and watch 'bin/skein status demo --watch'.
'bin/skein release demo' finishes it; 'make down' stops everything.
MSG
if [ $ok = 1 ]; then
  say "PASS: source and destination are identical, row by row"
else
  die "FAIL: source and destination differ (see above)"
fi
