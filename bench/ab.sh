#!/usr/bin/env bash
# A/B of two portcullis binaries on the same machine, interleaved, loopback only:
#   bench/ab.sh OLD_BINARY NEW_BINARY        (ROUNDS=5 DURATION=10s CONNS=64 by default)
# Each binary runs the full-authentication route of bench/compare.sh (JWT, role rule, API
# limit, metrics, audit file on tmpfs) with ONE worker pinned to core 1, against the static
# nginx upstream; `wrk -t1` on core 0. Prints the median req/s, p99 and CPU per request of each,
# and the ratio. Build the old one from another checkout with its own CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2")
ROUNDS="${ROUNDS:-5}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"
for t in wrk nginx taskset; do command -v "$t" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx util-linux >/dev/null; break; }; done
W=$(mktemp -d -p "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp)"); PIDS=(); KILL=()
cleanup() { for p in "${KILL[@]}"; do kill -9 "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
export JWT_SECRET_KEY="bench_secret_0123456789_abcdefghijklmnopqrstuv"
mkdir -p "$W/up"; nginx -p "$W/up/" -e stderr -c "$PWD/bench/conf/upstream_nginx.conf" 2>/dev/null & PIDS+=($!)
config() { cat <<YAML
server: { listen: "127.0.0.1:$1", admin_listen: "127.0.0.1:$2", threads: 1, pid_file: "$W/p$1.pid", upgrade_sock: "$W/u$1.sock" }
store: { backend: memory }
# Bench tokens live an hour: the gateway refuses access tokens longer-lived than its own.
tokens: { access_ttl_minutes: 120 }
roles: { admin: 3, editor: 2, viewer: 1 }
upstreams: { up: { url: "http://127.0.0.1:9000" } }
rate_limits: { api: { per_user: { requests: 1000000000, per_seconds: 60 }, per_ip_public: { requests: 1000000000, per_seconds: 60 } } }
audit: { sink: file, file: "audit-$1.log" }
metrics: { enabled: true }
routes:
  - { name: api, path: "/api/**", require_role: editor, upstream: up }
YAML
}
config 8091 9191 > "$W/a.yaml"; config 8092 9192 > "$W/b.yaml"
taskset -c 1 "$OLD" run -c "$W/a.yaml" 2>/dev/null & KILL+=($!); A=$!
taskset -c 1 "$NEW" run -c "$W/b.yaml" 2>/dev/null & KILL+=($!); B=$!
for adm in 9191 9192; do for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$adm/readyz" 2>/dev/null && break; sleep 0.1; done; done
TOKEN=$("$NEW" token -c "$W/b.yaml" --user-id bench --role editor --ttl-seconds 3600)
TCK=$(getconf CLK_TCK)
ticks() { local t=0 f; for p in $1 $(pgrep -P "$1"); do read -r -a f < "/proc/$p/stat" || continue; t=$((t + f[13] + f[14])); done; echo $t; }
echo "which,round,rps,p99_ms,cpu_us" > "$W/ab.csv"
for r in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    if [ $which = old ]; then port=8091; pid=$A; else port=8092; pid=$B; fi
    url="http://127.0.0.1:$port/api/items"
    taskset -c 0 wrk -t1 -c"$CONNS" -d2s -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
    c0=$(ticks $pid)
    taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$url" > "$W/out"
    c1=$(ticks $pid)
    reqs=$(awk '/requests in/ {print $1}' "$W/out"); rps=$(awk '/Requests\/sec/ {print $2}' "$W/out")
    p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) sub(/ms/,"",v); else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$W/out")
    cpu=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", d / t / n * 1e6}')
    echo "$which,$r,$rps,$p99,$cpu" >> "$W/ab.csv"; echo "round $r $which: $rps req/s, p99 $p99 ms, $cpu us CPU/req" >&2
  done
done
python3 - "$W/ab.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
m = {w: {k: statistics.median(float(r[k]) for r in rows if r["which"] == w) for k in ["rps", "p99_ms", "cpu_us"]} for w in ["old", "new"]}
print("| binary | req/s | p99 ms | CPU us/req |\n|---|---:|---:|---:|")
for w in ["old", "new"]:
    print(f"| {w} | {m[w]['rps']:,.0f} | {m[w]['p99_ms']:.2f} | {m[w]['cpu_us']:.1f} |")
print(f"\nnew/old: {m['new']['rps']/m['old']['rps']:.3f}x req/s, {m['new']['cpu_us']/m['old']['cpu_us']:.3f}x CPU per request ({len(rows)//2} interleaved rounds, medians)")
PY
