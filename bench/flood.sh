#!/usr/bin/env bash
# Slow and flooding clients against one gateway (loopback only):
#   bench/flood.sh                -> bench/results-flood.md
#   NEW_RATE=100 bench/flood.sh   -> bench/results-flood-new-rate.md (with
#     server.max_new_connections_per_ip_per_second: 100, so the flood's address is refused at
#     accept, before a task is spawned, once its burst is spent)
# A well-behaved client at a fixed rate (open loop, 16 kept-alive connections, latency counted
# from when each request was due) measures p50/p99 while quiet, then while 2,000 slow-loris
# connections (from 20 loopback addresses, a header byte every 2 s) and a flood of new
# connections (RATE/s from one address, opened and closed) hit the same gateway. ROUNDS
# interleaved rounds; the table gives each round and the medians.
# Gateway: release build, 2 worker threads, header_timeout_ms 10000, max_connections 10000,
# max_connections_per_ip 200. Everything shares this machine's cores with the load.
# PIN=1: the attack tools on CPU 1, the gateway, its upstream and the victim on CPU 0 (the
# attacker no longer competes for the gateway's core; the kernel's loopback work still does).
set -euo pipefail
cd "$(dirname "$0")/.."
PIN="${PIN:-0}"
if [ "$PIN" = 1 ]; then ON_GW="taskset -c 0"; ON_ATTACK="taskset -c 1"; else ON_GW=""; ON_ATTACK=""; fi
NEW_RATE="${NEW_RATE:-0}"; ROUNDS="${ROUNDS:-3}"; SECONDS_PER="${SECONDS_PER:-10}"; RATE="${RATE:-500}"; FLOOD="${FLOOD:-10000}"; LORIS="${LORIS:-2000}"
command -v redis-server >/dev/null || scripts/ensure-deps
cargo build --release --bin portcullis --example echo --example flood >/dev/null 2>&1
ulimit -n 65536 2>/dev/null || true

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
export JWT_SECRET_KEY="bench-secret-0123456789abcdef0123456789"
UP=127.0.0.1:39300; GW=127.0.0.1:39380; ADM=127.0.0.1:39390
$ON_GW target/release/examples/echo "$UP" 2>/dev/null & PIDS+=($!)
cat > "$WORK/gw.yaml" <<YAML
server: { listen: "$GW", admin_listen: "$ADM", threads: 2, pid_file: "$WORK/p.pid", upgrade_sock: "$WORK/u.sock",
          header_timeout_ms: 10000, max_connections: 10000, max_connections_per_ip: 200,
          max_new_connections_per_ip_per_second: $NEW_RATE }
store: { backend: memory }
audit: { sink: none }
logging: { level: warn }
roles: { admin: 3, user: 2, viewer: 1, guest: 0 }
permissions: {}
upstreams: { app: { url: "http://$UP" } }
routes:
  - { name: docs, path: "/public/**", public: true, upstream: app }
YAML
$ON_GW target/release/portcullis run -c "$WORK/gw.yaml" 2>"$WORK/gw.log" & PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://$GW/public/x" 2>/dev/null && break; sleep 0.1; done
FLOODBIN=target/release/examples/flood

quiet() { $ON_GW $FLOODBIN victim "$GW" "$RATE" "$SECONDS_PER"; }
attacked() { # $1 = the attack's target (the gateway, or another server for the floor)
  $ON_ATTACK $FLOODBIN slowloris "$1" "$LORIS" $((SECONDS_PER + 2)) 20 2>>"$WORK/attack.log" & local l=$!
  sleep 1.5
  $ON_ATTACK $FLOODBIN connect "$1" "$FLOOD" "$SECONDS_PER" 127.0.0.9 2>>"$WORK/attack.log" & local f=$!
  $ON_GW $FLOODBIN victim "$GW" "$RATE" "$SECONDS_PER"
  wait "$f" || true; wait "$l" 2>/dev/null || true
}
metric() { curl -fsS "http://$ADM/metrics" | awk -v m="$1" '$1==m {print $2}'; }

SUFFIX=""; [ "$PIN" = 1 ] && SUFFIX="-pinned"; [ "$NEW_RATE" != 0 ] && SUFFIX="$SUFFIX-new-rate"
OUT=bench/results-flood$SUFFIX.md
{
  echo "# Slow and flooding clients (bench/flood.sh, $(date -u +%Y-%m-%d))"
  echo
  [ "$PIN" = 1 ] && echo "Pinned: attack tools on CPU 1; gateway, upstream and victim on CPU 0." && echo
  [ "$NEW_RATE" != 0 ] && echo "With \`server.max_new_connections_per_ip_per_second: $NEW_RATE\`." && echo
  echo "Victim: $RATE req/s for ${SECONDS_PER}s per phase; attack: $LORIS slow-loris connections from 20 addresses + $FLOOD new connections/s from 127.0.0.9."
  echo
  echo "Floor: the same attack aimed at another server on this machine (the echo upstream, directly) while the victim still goes through the gateway: what the attack tools' own CPU and the kernel cost the victim on 2 shared cores."
  echo
  echo "| round | quiet p50 (µs) | quiet p99 (µs) | attacked p50 (µs) | attacked p99 (µs) | p99 ratio | floor p99 (µs) | floor ratio | victim failures (quiet/attacked/floor) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} > "$OUT"
Q99=(); A99=(); F99=()
for r in $(seq 1 "$ROUNDS"); do
  read -r q50 q99 qn qf < <(quiet)
  read -r a50 a99 an af < <(attacked "$GW")
  sleep 11 # slow-loris connections still held are closed by the header deadline
  read -r f50 f99 fn ff < <(attacked "$UP")
  sleep 3
  ratio=$(awk -v a="$a99" -v q="$q99" 'BEGIN { printf "%.2f", a / q }')
  fratio=$(awk -v a="$f99" -v q="$q99" 'BEGIN { printf "%.2f", a / q }')
  echo "| $r | $q50 | $q99 | $a50 | $a99 | $ratio | $f99 | $fratio | $qf/$af/$ff |" >> "$OUT"
  Q99+=("$q99"); A99+=("$a99"); F99+=("$f99")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mq=$(median "${Q99[@]}"); ma=$(median "${A99[@]}"); mf=$(median "${F99[@]}")
{
  echo
  echo "Median p99: quiet $mq µs, attacked $ma µs (ratio $(awk -v a="$ma" -v q="$mq" 'BEGIN { printf "%.2f", a / q }')), floor $mf µs (ratio $(awk -v a="$mf" -v q="$mq" 'BEGIN { printf "%.2f", a / q }'))."
  echo
  echo "Gateway counters after the run: header timeouts $(metric portcullis_header_timeouts_total), refused per_ip $(metric 'portcullis_connections_refused_total{reason="per_ip"}'), refused total $(metric 'portcullis_connections_refused_total{reason="total"}'), refused new_per_ip $(metric 'portcullis_connections_refused_total{reason="new_per_ip"}')."
  echo
  echo "Attack tools said:"
  echo '```'
  cat "$WORK/attack.log"
  echo '```'
} >> "$OUT"
cat "$OUT"
