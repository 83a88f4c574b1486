#!/usr/bin/env bash
# Soak: the simulator with a steady change rate, `hirehook run`, and the example receiver,
# for a given duration; every interval, one CSV row of memory and backlog.
#
#   scripts/soak.sh [DURATION_SECONDS=3600] [OUT=soak.csv] [INTERVAL_SECONDS=30]
#
# Environment: SOAK_APPLICATIONS (per integration, default 10000), SOAK_INTEGRATIONS (3),
# SOAK_CHANGES_PER_SECOND (20), SOAK_POLL_INTERVAL ("10s"), HIREHOOK_BIN (default: build
# the release binary), SOAK_DIR (work directory, default a fresh temp dir).
#
# Columns: elapsed_s, hirehook_rss_kb, sim_rss_kb, receiver_rss_kb, outbox_pending (sum
# over subscribers), events_total, deliveries_total (all outcomes), store_bytes.
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
root=$(cd "$(dirname "$0")/.." && pwd)
work=${SOAK_DIR:-$(mktemp -d)}
mkdir -p "$work"
secret="whsec_c29hayB0ZXN0IHNpZ25pbmcga2V5IDAxMjM0NTY3"
token="soak-admin-token-0123456789"
admin="127.0.0.1:9477"
receiver_addr="127.0.0.1:9478"

if [[ -z "${HIREHOOK_BIN:-}" ]]; then
  (cd "$root" && cargo build --release --bin hirehook --example receiver)
  target=${CARGO_TARGET_DIR:-$root/target}
  HIREHOOK_BIN=$target/release/hirehook
  RECEIVER_BIN=$target/release/examples/receiver
fi
RECEIVER_BIN=${RECEIVER_BIN:?set RECEIVER_BIN with HIREHOOK_BIN}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

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
cat >"$config" <<TOML
[store]
path = "$work/store"

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
for id in $ids; do printf '\n[[integrations]]\nid = "%s"\n' "$id" >>"$config"; done

"$HIREHOOK_BIN" run --config "$config" 2>"$work/hirehook.log" &
hh_pid=$!; pids+=("$hh_pid")

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
metric() { # sum of a metric's samples
  curl -fsS "http://$admin/metrics" 2>/dev/null |
    awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $NF} END {printf "%d", s}'
}

echo "elapsed_s,hirehook_rss_kb,sim_rss_kb,receiver_rss_kb,outbox_pending,events_total,deliveries_total,store_bytes" >"$out"
start=$(date +%s)
while :; do
  now=$(date +%s); elapsed=$((now - start))
  kill -0 "$hh_pid" 2>/dev/null || { echo "hirehook exited; see $work/hirehook.log" >&2; exit 1; }
  echo "$elapsed,$(rss "$hh_pid"),$(rss "$sim_pid"),$(rss "$receiver_pid"),$(metric hirehook_outbox_pending),$(metric hirehook_events_total),$(metric hirehook_deliveries_total),$(du -sb "$work/store" | cut -f1)" >>"$out"
  ((elapsed >= duration)) && break
  sleep "$interval"
done
kill -TERM "$hh_pid"; wait "$hh_pid" || true
echo "soak done: $out (work dir $work)"
