#!/usr/bin/env bash
# Quick throughput and latency figures for Portcullis on this machine (loopback only).
#   bench/quick.sh            -> prints a markdown table; needs wrk (installed if missing)
# Gateway: release build, ONE worker thread; upstream: the echo example; load: wrk -t1.
# Figures move 5-10% between runs on shared machines: compare rows of one run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v redis-server >/dev/null || scripts/ensure-deps
cargo build --release --bin portcullis --example echo >/dev/null 2>&1

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
export JWT_SECRET_KEY="bench-secret-0123456789abcdef0123456789"
UP=127.0.0.1:39100; GW=127.0.0.1:39180; ADM=127.0.0.1:39190; RPORT=39179

target/release/examples/echo "$UP" 2>/dev/null & PIDS+=($!)
redis-server --bind 127.0.0.1 --port $RPORT --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)

config() { # $1 = store line, $2 = extra sections (default: no audit, metrics on, no limits)
cat > "$WORK/gw.yaml" <<YAML
server: { listen: "$GW", admin_listen: "$ADM", threads: 1, pid_file: "$WORK/p.pid", upgrade_sock: "$WORK/u.sock" }
$1
${2:-audit: { sink: none }}
tokens: { access_ttl_minutes: 120 }
roles: { admin: 3, user: 2, viewer: 1, guest: 0 }
permissions:
  projects: { admin: [create, read, update, delete], user: [create, read, update], viewer: [read], guest: [] }
upstreams: { app: { url: "http://$UP" } }
routes:
  - { name: project-delete, path: "/projects/{id}", methods: [DELETE], permission: "projects:delete", upstream: app }
  - { name: projects-read,  path: "/projects/**", methods: [GET], permission: "projects:read", upstream: app }
  - { name: docs,           path: "/public/**", public: true, upstream: app }
YAML
}

start_gw() {
  target/release/portcullis run -c "$WORK/gw.yaml" 2>"$WORK/gw.log" & GW_PID=$!
  # Ready means the store answers AND the proxy listener accepts (it may bind after the admin one).
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$ADM/readyz" 2>/dev/null && curl -fsS -o /dev/null "http://$GW/public/x" 2>/dev/null && return
    sleep 0.1
  done
  echo "gateway did not start"; cat "$WORK/gw.log"; exit 1
}
stop_gw() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }

# wrk summary -> "req/s p50 p99"
measure() { # url [extra wrk args...]; CONNS=n measure ... for another connection count
  local url=$1; shift
  wrk -t1 -c"${CONNS:-32}" -d"$DURATION" --latency "$@" "$url" > "$WORK/wrk.out" 2>&1
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.out")
  errors=$(awk '/Socket errors/ {print $4 $6 $8 $10}' "$WORK/wrk.out" | tr -d ',')
  echo "| $LABEL | $rps | $p50 | $p99 | ${non2xx:-0} | ${errors:-0} |"
}

echo "| system (1 gateway thread, wrk -t1 -c32 -d$DURATION) | req/s | p50 | p99 | non-2xx | socket errors |"
echo "|---|---:|---:|---:|---:|---:|"
LABEL="direct to the echo upstream"; measure "http://$UP/public/x"

config "store: { backend: memory }"; start_gw
TOKEN=$(target/release/portcullis token -c "$WORK/gw.yaml" --user-id 1 --role viewer --ttl-seconds 3600)
LABEL="portcullis, public route"; measure "http://$GW/public/x"
LABEL="portcullis, JWT + permission (memory store)"; measure "http://$GW/projects/1" -H "Authorization: Bearer $TOKEN"
stop_gw
config "store: { backend: memory }" "$(printf 'audit: { sink: none }\nmetrics: { enabled: false }')"; start_gw
LABEL="portcullis, JWT + permission, metrics off"; measure "http://$GW/projects/1" -H "Authorization: Bearer $TOKEN"
stop_gw
config "store: { backend: memory }" "$(printf 'audit: { sink: file, file: audit.log }\nrate_limits: { api: { per_user: { requests: 1000000000, per_seconds: 60 } } }')"; start_gw
LABEL="portcullis, JWT + permission + API limit + audit (file)"; measure "http://$GW/projects/1" -H "Authorization: Bearer $TOKEN"
stop_gw

config "store: { backend: redis, redis_url: \"redis://127.0.0.1:$RPORT\" }"; start_gw
before=$(redis-cli -p $RPORT INFO stats | awk -F: '/total_commands_processed/ {print $2+0}')
LABEL="portcullis, JWT + permission (redis store)"; measure "http://$GW/projects/1" -H "Authorization: Bearer $TOKEN"
after=$(redis-cli -p $RPORT INFO stats | awk -F: '/total_commands_processed/ {print $2+0}')
proxied=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
echo
echo "Redis commands during the redis-store run: $((after - before - 1)) for $proxied proxied requests (background sync included)"

# Logins: argon2id at the default cost (m=19 MiB, t=2, p=1), hashing bounded to 1 at a time.
ADMIN=$(target/release/portcullis token -c "$WORK/gw.yaml" --user-id op --role admin --ttl-seconds 600)
curl -fsS -o /dev/null "http://$GW/admin/users" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123","role":"viewer"}'
cat > "$WORK/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"email":"bench@example.com","password":"bench-password-123"}'
wrk.headers["Content-Type"] = "application/json"
LUA
echo
echo "| logins (redis store) | req/s | p50 | p99 | non-2xx | socket errors |"
echo "|---|---:|---:|---:|---:|---:|"
LABEL="POST /auth/login, 1 client"; CONNS=1 measure "http://$GW/auth/login" -s "$WORK/login.lua"
stop_gw

# A login flood must not slow proxied traffic: proxied p99 alone, then with 8 clients logging in.
config "store: { backend: memory }"; start_gw
curl -fsS -o /dev/null "http://$GW/admin/users" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123","role":"viewer"}'
echo
echo "| proxied traffic during a login flood | req/s | p50 | p99 | non-2xx | socket errors |"
echo "|---|---:|---:|---:|---:|---:|"
LABEL="JWT route, no logins"; measure "http://$GW/projects/1" -H "Authorization: Bearer $TOKEN"
wrk -t1 -c8 -d"$DURATION" -s "$WORK/login.lua" "http://$GW/auth/login" > "$WORK/flood.out" 2>&1 & FLOOD=$!
sleep 1
LABEL="JWT route, 8 clients flooding /auth/login"; measure "http://$GW/projects/1" -H "Authorization: Bearer $TOKEN"
wait $FLOOD || true
echo
echo "login flood itself: $(awk '/Requests\/sec/ {print $2}' "$WORK/flood.out") logins/s"
stop_gw
