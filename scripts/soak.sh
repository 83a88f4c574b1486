#!/usr/bin/env bash
# Soak: the simulator with a steady change rate, `hirehook run`, and the example receiver,
# for a given duration; every interval, one CSV row of memory and backlog.
#
#   scripts/soak.sh [DURATION_SECONDS=3600] [OUT=soak.csv] [INTERVAL_SECONDS=30]
#
# Environment: SOAK_APPLICATIONS (per integration, default 10000), SOAK_INTEGRATIONS (3),
# SOAK_CHANGES_PER_SECOND (20), SOAK_POLL_INTERVAL ("10s"), HIREHOOK_BIN (default: build
# the release binary), SOAK_DIR (work directory, default a fresh temp dir),
# SOAK_RETENTION_EVENTS / SOAK_RETENTION_DELETED / SOAK_SWEEP_INTERVAL (`[retention]`'s
# events, deleted_applications, sweep_interval; unset = the defaults), SOAK_BACKEND
# ("sled" or "postgres"; postgres uses SOAK_DATABASE_URL, or starts its own server with
# initdb + pg_ctl in the work directory, as the postgres user when run as root),
# SOAK_REWRITE_GROWTH (sled's `store.rewrite_growth`, e.g. "20%"), SOAK_CACHE_CAPACITY
# (sled's `store.cache_capacity`, e.g. "8MiB").
#
# Columns: elapsed_s, hirehook_rss_kb, sim_rss_kb, receiver_rss_kb, outbox_pending (sum
# over subscribers), events_total, deliveries_total (all outcomes), store_bytes (sled: the
# store directory; postgres: pg_database_size), removed_events, removed_snapshots (what
# retention removed so far), oldest_event_age_s.
# "Memory flat, no backlog growth": hirehook_rss_kb levels off after the first minutes,
# outbox_pending stays near zero, events_total and deliveries_total grow together.
set -euo pipefail

duration=${1:-3600}
out=${2:-soak.csv}
interval=${3:-30}
apps=${SOAK_APPLICATIONS:-10000}
integrations=${SOAK_INTEGRATIONS:-3}
rate=${SOAK_CHANGES_PER_SECOND:-20}
poll=${SOAK_POLL_INTERVAL:-10s}
backend=${SOAK_BACKEND:-sled}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${SOAK_DIR:-$(mktemp -d)}
mkdir -p "$work"
secret="whsec_c29hayB0ZXN0IHNpZ25pbmcga2V5IDAxMjM0NTY3"
token="soak-admin-token-0123456789"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
admin="127.0.0.1:$(free_port)"
receiver_addr="127.0.0.1:$(free_port)"

if [[ -z "${HIREHOOK_BIN:-}" ]]; then
  (cd "$root" && cargo build --release --bin hirehook --example receiver)
  target=${CARGO_TARGET_DIR:-$root/target}
  HIREHOOK_BIN=$target/release/hirehook
  RECEIVER_BIN=$target/release/examples/receiver
fi
RECEIVER_BIN=${RECEIVER_BIN:?set RECEIVER_BIN with HIREHOOK_BIN}

pids=()
pg_stop=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((${#pg_stop[@]})); then "${pg_stop[@]}" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
database_url=${SOAK_DATABASE_URL:-}
if [[ $backend == postgres && -z $database_url ]]; then
  pgdir=$work/pg
  mkdir -p "$pgdir"
  [[ $(id -u) == 0 ]] && chown postgres "$pgdir"
  pg_port=$(free_port)
  as_pg initdb -D "$pgdir/data" -U hirehook --auth=trust >"$work/initdb.log"
  as_pg pg_ctl -D "$pgdir/data" -l "$pgdir/server.log" -w \
    -o "-p $pg_port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  pg_stop=(as_pg pg_ctl -D "$pgdir/data" -m fast stop)
  database_url="postgres://hirehook@127.0.0.1:$pg_port/postgres"
fi

"$HIREHOOK_BIN" sim --listen 127.0.0.1:0 --integrations "$integrations" \
  --applications "$apps" --changes-per-second "$rate" >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!; pids+=("$sim_pid")
for _ in $(seq 600); do [[ -s "$work/sim.out" ]] && break; sleep 0.1; done
line=$(head -n1 "$work/sim.out")
base_url=$(sed -E 's/.*"base_url":"([^"]+)".*/\1/' <<<"$line")
api_key=$(sed -E 's/.*"api_key":"([^"]+)".*/\1/' <<<"$line")
ids=$(sed -E 's/.*"integrations":\[([^]]*)\].*/\1/' <<<"$line" | tr -d '"' | tr ',' ' ')

HIREHOOK_WEBHOOK_SECRET=$secret LISTEN_ADDR=$receiver_addr "$RECEIVER_BIN" \
  >"$work/receiver.out" 2>"$work/receiver.log" &
receiver_pid=$!; pids+=("$receiver_pid")

config=$work/hirehook.toml
if [[ $backend == postgres ]]; then
  printf '[store]\nbackend = "postgres"\nurl = "%s"\n' "$database_url" >"$config"
else
  printf '[store]\npath = "%s"\n' "$work/store" >"$config"
  [[ -n ${SOAK_REWRITE_GROWTH:-} ]] && printf 'rewrite_growth = "%s"\n' "$SOAK_REWRITE_GROWTH" >>"$config"
  [[ -n ${SOAK_CACHE_CAPACITY:-} ]] && printf 'cache_capacity = "%s"\n' "$SOAK_CACHE_CAPACITY" >>"$config"
fi
cat >>"$config" <<TOML

[kombo]
base_url = "$base_url"
api_key = "$api_key"
poll_interval = "$poll"

[delivery]
allow_private_networks = true

[admin]
listen = "$admin"
token = "$token"

[[subscribers]]
name = "receiver"
url = "http://$receiver_addr/hook"
secrets = ["$secret"]
TOML
if [[ -n ${SOAK_RETENTION_EVENTS:-}${SOAK_RETENTION_DELETED:-}${SOAK_SWEEP_INTERVAL:-} ]]; then
  printf '\n[retention]\n' >>"$config"
  [[ -n ${SOAK_RETENTION_EVENTS:-} ]] && printf 'events = "%s"\n' "$SOAK_RETENTION_EVENTS" >>"$config"
  [[ -n ${SOAK_RETENTION_DELETED:-} ]] &&
    printf 'deleted_applications = "%s"\n' "$SOAK_RETENTION_DELETED" >>"$config"
  [[ -n ${SOAK_SWEEP_INTERVAL:-} ]] && printf 'sweep_interval = "%s"\n' "$SOAK_SWEEP_INTERVAL" >>"$config"
fi
for id in $ids; do printf '\n[[integrations]]\nid = "%s"\n' "$id" >>"$config"; done

"$HIREHOOK_BIN" run --config "$config" 2>"$work/hirehook.log" &
hh_pid=$!; pids+=("$hh_pid")

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
scrape() { metrics=$(curl -fsS "http://$admin/metrics" 2>/dev/null || true); }
metric() { # sum of a metric's samples in the last scrape whose line also matches $2
  awk -v m="$1" -v f="${2:-}" '$1 ~ "^"m"({|$)" && index($0, f) {s += $NF} END {printf "%d", s}' <<<"$metrics"
}
store_bytes() {
  if [[ $backend == postgres ]]; then
    psql -XAtq "$database_url" -c 'SELECT pg_database_size(current_database())' 2>/dev/null || echo ""
  else
    du -sb "$work/store" | cut -f1
  fi
}

echo "elapsed_s,hirehook_rss_kb,sim_rss_kb,receiver_rss_kb,outbox_pending,events_total,deliveries_total,store_bytes,removed_events,removed_snapshots,oldest_event_age_s" >"$out"
start=$(date +%s)
while :; do
  now=$(date +%s); elapsed=$((now - start))
  kill -0 "$hh_pid" 2>/dev/null || { echo "hirehook exited; see $work/hirehook.log" >&2; exit 1; }
  scrape
  echo "$elapsed,$(rss "$hh_pid"),$(rss "$sim_pid"),$(rss "$receiver_pid"),$(metric hirehook_outbox_pending),$(metric hirehook_events_total),$(metric hirehook_deliveries_total),$(store_bytes),$(metric hirehook_retention_removed_total 'class="events"'),$(metric hirehook_retention_removed_total 'class="snapshots"'),$(metric hirehook_oldest_event_age_seconds)" >>"$out"
  ((elapsed >= duration)) && break
  sleep "$interval"
done
# The end: the simulator's changes stop being fetched only when hirehook stops, so wait for
# the backlog to drain (pending 0), then compare what was derived with what was delivered.
for _ in $(seq 120); do scrape; [[ $(metric hirehook_outbox_pending) == 0 ]] && break; sleep 1; done
events=$(metric hirehook_events_total)
delivered=$(metric hirehook_deliveries_total 'outcome="delivered"')
dead=$(metric hirehook_deliveries_total 'outcome="dead_lettered"')
echo "end (one scrape): events_total=$events delivered=$delivered dead_lettered=$dead pending=$(metric hirehook_outbox_pending)"
kill -TERM "$hh_pid"; wait "$hh_pid" || true
echo "soak done: $out (work dir $work)"
