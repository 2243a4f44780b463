#!/usr/bin/env bash
# Proxied latency of two gateway binaries side by side (interleaved rounds), on the callgrind
# bench's configuration (one worker thread, audit to a file, metrics, limits, full JWT auth),
# against the static nginx upstream. Written to compare audit writer settings:
#   A=/tmp/one B=/tmp/other bench/linger.sh      (ROUNDS=3, DURATION=10s by default)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${A:?the first binary}" "${B:?the second binary}"
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-10s}"
for t in wrk nginx; do command -v "$t" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null; }; done
W=$(mktemp -d); UP=""; GW=""
cleanup() { kill "$UP" "$GW" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
export JWT_SECRET_KEY="bench_secret_0123456789_abcdefghijklmnopqrstuv"
mkdir -p "$W/up"
nginx -p "$W/up/" -e stderr -c "$PWD/bench/conf/upstream_nginx.conf" 2>/dev/null & UP=$!
cat > "$W/gw.yaml" <<YAML
server: { listen: "127.0.0.1:8094", admin_listen: "127.0.0.1:9194", threads: 1, pid_file: "$W/p.pid", upgrade_sock: "$W/u.sock" }
store: { backend: memory }
tokens: { access_ttl_minutes: 120 }
roles: { admin: 3, editor: 2, viewer: 1 }
upstreams: { up: { url: "http://127.0.0.1:9000" } }
rate_limits: { api: { per_user: { requests: 1000000000, per_seconds: 60 }, per_ip_public: { requests: 1000000000, per_seconds: 60 } } }
audit: { sink: file, file: "$W/audit.log" }
metrics: { enabled: true }
routes:
  - { name: api, path: "/api/**", require_role: editor, upstream: up }
YAML
TOKEN=$("$A" token -c "$W/gw.yaml" --user-id bench --role editor --ttl-seconds 3600)
printf '| binary | round | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n'
for r in $(seq 1 "$ROUNDS"); do
  for name in A B; do
    bin=${!name}
    "$bin" run -c "$W/gw.yaml" >"$W/$name.log" 2>&1 & GW=$!
    for _ in $(seq 1 100); do curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8094/api/x && break; sleep 0.1; done
    wrk -t1 -c16 -d2s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8094/api/x >/dev/null
    out=$(wrk -t1 -c16 -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8094/api/x)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$r" "$rps" "$p50" "$p99"
    kill "$GW"; wait "$GW" 2>/dev/null || true
  done
done
