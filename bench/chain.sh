#!/usr/bin/env bash
# The provider-chain rows, before and after a change, on this machine (loopback only):
#   BEFORE=/path/to/old/portcullis bench/chain.sh     (ROUNDS=3 DURATION=10s CONNS=64)
# Every gateway runs with ONE worker thread pinned to core 1, wrk pinned to core 0, a static
# nginx upstream answering chat completions with their usage; full authentication, audit file
# on tmpfs, metrics on; medians of ROUNDS interleaved rounds. Rows:
#   GET /v1/models through the chain (compare.sh's "Portcullis provider chain" row), before/after;
#   POST /v1/chat/completions: before (passed through unread), after without `llm_limits` (usage
#   read), after with `llm_limits` on the memory store, and on Redis (one reservation and one
#   settlement per call).
# Without BEFORE only the "after" rows run. Then the sequential latency: SEQ (500) chat
# completions one after another over one kept-alive connection (curl), ROUNDS rounds, straight
# to the upstream, through a plain upstream route and through the chain: what a single caller
# waits, where the throughput rows cannot show a wait that costs no CPU.
# Writes bench/results-chain.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"
need=()
for t in wrk nginx redis-server taskset; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=(); for t in "${need[@]}"; do case $t in taskset) pkgs+=(util-linux);; redis-server) pkgs+=(redis-server);; *) pkgs+=("$t");; esac; done
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
cargo build --release --bin portcullis >/dev/null 2>&1
W=$(mktemp -d -p "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo /tmp)"); PIDS=(); KILL_PIDS=()
cleanup() { for p in "${KILL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
export JWT_SECRET_KEY="bench_secret_0123456789_abcdefghijklmnopqrstuv" BENCH_PROVIDER_KEY="sk-bench"
PIN_SUT=""; PIN_LOAD=""
if [ "$(nproc)" -ge 2 ]; then PIN_SUT="taskset -c 1"; PIN_LOAD="taskset -c 0"; fi
mkdir -p "$W/up"
nginx -p "$W/up/" -e stderr -c "$PWD/bench/conf/upstream_nginx.conf" 2>/dev/null & PIDS+=($!)
redis-server --bind 127.0.0.1 --port 9479 --save "" --appendonly no --dir "$W" >/dev/null & PIDS+=($!)

config() { # $1 listen, $2 admin, $3 store line, $4 extra lines
cat <<YAML
server: { listen: "$1", admin_listen: "$2", threads: 1, pid_file: "$W/p$1.pid", upgrade_sock: "$W/u$1.sock" }
$3
tokens: { access_ttl_minutes: 120 }
roles: { admin: 3, editor: 2, viewer: 1 }
upstreams: { up: { url: "http://127.0.0.1:9000" } }
rate_limits:
  api: { per_user: { requests: 1000000000, per_seconds: 60 }, per_ip_public: { requests: 1000000000, per_seconds: 60 } }
  login: { per_ip: { requests: 1000000000, per_seconds: 60 }, per_account: { requests: 1000000000, per_seconds: 60 } }
audit: { sink: file, file: "$W/audit-$1.log" }
metrics: { enabled: true }
providers: { bench: { url: "http://127.0.0.1:9000", api_key_env: BENCH_PROVIDER_KEY, auth: bearer } }
provider_chains: { llm: { primary: bench } }
routes:
  - { name: llm, path: "/v1/**", require_role: editor, chain: llm }
$4
YAML
}
LIMITS='llm_limits: { default: { tokens_per_minute: 1000000000000, tokens_per_day: 1000000000000 } }'
config 127.0.0.1:8185 127.0.0.1:9285 "store: { backend: memory }" "" > "$W/after.yaml"
config 127.0.0.1:8186 127.0.0.1:9286 "store: { backend: memory }" "$LIMITS" > "$W/budget-mem.yaml"
config 127.0.0.1:8187 127.0.0.1:9287 "store: { backend: redis, redis_url: \"redis://127.0.0.1:9479\" }" "$LIMITS" > "$W/budget-redis.yaml"
# The same gateway with the chain's path as a plain upstream route (for the sequential latency).
config 127.0.0.1:8188 127.0.0.1:9288 "store: { backend: memory }" "" | sed 's|chain: llm }|upstream: up }|' > "$W/plain.yaml"
# start BIN CONFIG: runs a gateway; its pid in STARTED.
start() { $PIN_SUT "$1" run -c "$2" >/dev/null 2>"$2.log" & STARTED=$!; KILL_PIDS+=("$STARTED"); }
start target/release/portcullis "$W/after.yaml"; AFTER=$STARTED
start target/release/portcullis "$W/budget-mem.yaml"; MEM=$STARTED
start target/release/portcullis "$W/budget-redis.yaml"; RED=$STARTED
start target/release/portcullis "$W/plain.yaml"
SYSTEMS=()
if [ -n "${BEFORE:-}" ]; then
  config 127.0.0.1:8184 127.0.0.1:9284 "store: { backend: memory }" "" > "$W/before.yaml"
  start "$BEFORE" "$W/before.yaml"; OLD=$STARTED
  SYSTEMS+=("chain GET /v1/models, before|http://127.0.0.1:8184/v1/models|GET|$OLD")
fi
SYSTEMS+=("chain GET /v1/models, after|http://127.0.0.1:8185/v1/models|GET|$AFTER")
[ -n "${BEFORE:-}" ] && SYSTEMS+=("chat completion, before (passed through unread)|http://127.0.0.1:8184/v1/chat/completions|POST|$OLD")
SYSTEMS+=(
  "chat completion, after: usage read, no budgets|http://127.0.0.1:8185/v1/chat/completions|POST|$AFTER"
  "chat completion, after: usage + budgets (memory store)|http://127.0.0.1:8186/v1/chat/completions|POST|$MEM"
  "chat completion, after: usage + budgets (redis store)|http://127.0.0.1:8187/v1/chat/completions|POST|$RED"
)
for port in 9000 9479 8185 8186 8187 8188 ${BEFORE:+8184}; do
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
sleep 1
TOKEN=$(target/release/portcullis token -c "$W/after.yaml" --user-id bench --role editor --ttl-seconds 3600)
cat > "$W/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o","max_tokens":64,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello to the benchmark."}]}'
wrk.headers["Content-Type"] = "application/json"
LUA
for entry in "${SYSTEMS[@]}"; do
  IFS='|' read -r name url method pid <<< "$entry"
  got=$(curl -s -o /dev/null -w '%{http_code}' -X "$method" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}' "$url")
  [ "$got" = 200 ] || { echo "CHECK FAILED: $name answered $got"; exit 1; }
done
cpu_ticks() { local t=0 f; for p in "$@"; do read -r -a f < "/proc/$p/stat" || continue; t=$((t + f[13] + f[14])); done; echo $t; }
lat() { awk -v q="$1" '$1==q {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$W/wrk.out"; }
TCK=$(getconf CLK_TCK)
echo "system,round,rps,p50_ms,p99_ms,cpu_us_per_req,non2xx" > "$W/chain.csv"
for round in $(seq 1 "$ROUNDS"); do
  for entry in "${SYSTEMS[@]}"; do
    IFS='|' read -r name url method pid <<< "$entry"
    script=(); [ "$method" = POST ] && script=(-s "$W/post.lua")
    $PIN_LOAD wrk -t1 -c"$CONNS" -d2s "${script[@]}" -H "Authorization: Bearer $TOKEN" "$url" >/dev/null 2>&1
    c0=$(cpu_ticks $pid)
    $PIN_LOAD wrk -t1 -c"$CONNS" -d"$DURATION" --latency "${script[@]}" -H "Authorization: Bearer $TOKEN" "$url" > "$W/wrk.out" 2>&1
    c1=$(cpu_ticks $pid)
    reqs=$(awk '/requests in/ {print $1}' "$W/wrk.out"); rps=$(awk '/Requests\/sec/ {print $2}' "$W/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $5}' "$W/wrk.out"); non2xx=${non2xx:-0}
    cpu=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", d / t / n * 1e6}')
    echo "\"$name\",$round,$rps,$(lat 50%),$(lat 99%),$cpu,$non2xx" >> "$W/chain.csv"
    echo "round $round: $name: $rps req/s, p99 $(lat 99%) ms, $cpu us CPU/req, non-2xx $non2xx" >&2
  done
done
cp "$W/chain.csv" bench/results-chain.csv
python3 - "$ROUNDS" <<'PY' > bench/results-chain.md
import csv, statistics, sys, datetime, os
rows = list(csv.DictReader(open("bench/results-chain.csv")))
order = []
for r in rows:
    if r["system"] not in order: order.append(r["system"])
med = {s: {k: statistics.median(float(r[k]) for r in rows if r["system"] == s) for k in ["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "non2xx"]} for s in order}
print(f"# Provider-chain rows, before and after\n\n`bench/chain.sh` on {datetime.date.today()}: {os.cpu_count()} cores, loopback, one worker thread "
      f"pinned to core 1, `wrk -t1 -c64` on core 0, static nginx upstream; medians of {sys.argv[1]} interleaved rounds.\n")
print("| row | req/s | p50 ms | p99 ms | CPU us/req | non-2xx |")
print("|---|---:|---:|---:|---:|---:|")
for s in order:
    m = med[s]
    print(f"| {s} | {m['rps']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['cpu_us_per_req']:.1f} | {m['non2xx']:.0f} |")
def ratio(a, b):
    if a in med and b in med:
        print(f"- {a}: {med[a]['rps']/med[b]['rps']:.3f}x of {b} ({med[a]['cpu_us_per_req']-med[b]['cpu_us_per_req']:+.1f} us CPU per request)")
print()
ratio("chain GET /v1/models, after", "chain GET /v1/models, before")
ratio("chat completion, after: usage read, no budgets", "chat completion, before (passed through unread)")
ratio("chat completion, after: usage + budgets (memory store)", "chat completion, before (passed through unread)")
ratio("chat completion, after: usage + budgets (redis store)", "chat completion, before (passed through unread)")
ratio("chat completion, after: usage + budgets (memory store)", "chat completion, after: usage read, no budgets")
PY

# Sequential latency: one caller, one kept-alive connection, one call after another.
SEQ="${SEQ:-500}"
seq_ms() { # URL -> "p50 p99" in ms over SEQ calls on one connection
  local urls=(); for _ in $(seq 1 "$SEQ"); do urls+=("$1"); done
  $PIN_LOAD curl -s -w '%{stderr}%{time_total}\n' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o","max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}' "${urls[@]}" 2>&1 >/dev/null \
    | sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f\n", a[int((NR+1)/2)]*1000, a[int(NR*0.99)]*1000}'
}
SEQ_ROWS=("straight to the upstream|http://127.0.0.1:9000/v1/chat/completions"
          "through a plain upstream route|http://127.0.0.1:8188/v1/chat/completions"
          "through the provider chain|http://127.0.0.1:8185/v1/chat/completions")
echo "row,round,p50_ms,p99_ms" > "$W/seq.csv"
for round in $(seq 1 "$ROUNDS"); do
  for entry in "${SEQ_ROWS[@]}"; do
    IFS='|' read -r name url <<< "$entry"
    read -r p50 p99 < <(seq_ms "$url")
    echo "\"$name\",$round,$p50,$p99" >> "$W/seq.csv"
    echo "round $round: sequential, $name: p50 $p50 ms, p99 $p99 ms" >&2
  done
done
python3 - "$W/seq.csv" "$SEQ" "$ROUNDS" <<'PY' >> bench/results-chain.md
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
order = []
for r in rows:
    if r["row"] not in order: order.append(r["row"])
med = {s: {k: statistics.median(float(r[k]) for r in rows if r["row"] == s) for k in ["p50_ms", "p99_ms"]} for s in order}
print(f"\n## Sequential latency\n\n{sys.argv[2]} non-streaming chat completions one after another over one kept-alive connection (curl), medians of {sys.argv[3]} rounds.\n")
print("| path | p50 ms | p99 ms |")
print("|---|---:|---:|")
for s in order:
    print(f"| {s} | {med[s]['p50_ms']:.3f} | {med[s]['p99_ms']:.3f} |")
plain, chain = med["through a plain upstream route"], med["through the provider chain"]
print(f"\nThe chain's overhead over the plain route: {chain['p50_ms'] - plain['p50_ms']:+.3f} ms p50, {chain['p99_ms'] - plain['p99_ms']:+.3f} ms p99.")
PY
cat bench/results-chain.md
