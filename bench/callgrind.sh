#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable on a noisy
# machine where req/s moves 10-30% between runs. One command:
#   bench/callgrind.sh              -> bare Pingora, Portcullis public route, full authentication
#   bench/callgrind.sh full         -> only the named systems (bare | public | full | haproxy)
# `haproxy` is HAProxy 2.6 with jwt_verify (bench/conf/haproxy_jwt.cfg, port 8083) doing the
# full-auth route's work; it runs only when named (and installs haproxy if it is missing).
# For each system it starts the static nginx upstream, the proxy under callgrind, warms it up,
# zeroes the counters, runs `wrk -t1 -c8 -d20s`, dumps, and divides the instructions of every
# thread (audit writer and background tasks included) by the requests wrk completed. The
# profiles stay in bench/callgrind/ for `callgrind_annotate --inclusive=yes --tree=calling`.
# Uses the same gateway configuration as bench/compare.sh (audit to a file, metrics, limits).
set -euo pipefail
cd "$(dirname "$0")/.."
SYSTEMS=("$@"); [ ${#SYSTEMS[@]} -gt 0 ] || SYSTEMS=(bare public full)
need=(); for t in wrk nginx valgrind; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release --bin portcullis --example bare_pingora >/dev/null 2>&1

W=$(mktemp -d); PIDS=(); UP=""
# nginx gets TERM (a KILLed master leaves its worker holding our stdout); the proxies get KILL.
cleanup() { kill "$UP" 2>/dev/null || true; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
export JWT_SECRET_KEY="bench_secret_0123456789_abcdefghijklmnopqrstuv" BENCH_PROVIDER_KEY="sk-bench"
export JWT_SECRET="$JWT_SECRET_KEY"
mkdir -p "$W/up" bench/callgrind
nginx -p "$W/up/" -e stderr -c "$PWD/bench/conf/upstream_nginx.conf" 2>/dev/null & UP=$!
cat > "$W/gw.yaml" <<YAML
server: { listen: "127.0.0.1:8094", admin_listen: "127.0.0.1:9194", threads: 1, pid_file: "$W/p.pid", upgrade_sock: "$W/u.sock" }
store: { backend: memory }
# Bench tokens live an hour: the gateway refuses access tokens longer-lived than its own.
tokens: { access_ttl_minutes: 120 }
roles: { admin: 3, editor: 2, viewer: 1 }
upstreams: { up: { url: "http://127.0.0.1:9000" } }
rate_limits: { api: { per_user: { requests: 1000000000, per_seconds: 60 }, per_ip_public: { requests: 1000000000, per_seconds: 60 } } }
audit: { sink: file, file: "$W/audit.log" }
metrics: { enabled: true }
routes:
  - { name: api,    path: "/api/**", require_role: editor, upstream: up }
  - { name: public, path: "/public/**", public: true, upstream: up }
YAML
TOKEN=$(target/release/portcullis token -c "$W/gw.yaml" --user-id bench --role editor --ttl-seconds 3600)
for _ in $(seq 1 50); do (echo > /dev/tcp/127.0.0.1/9000) 2>/dev/null && break; sleep 0.1; done

printf '| system | requests | instructions | per request |\n|---|---:|---:|---:|\n'
for sys in "${SYSTEMS[@]}"; do
  hdr=()
  case $sys in
    bare) cmd=(target/release/examples/bare_pingora 127.0.0.1:8094 127.0.0.1:9000); url=http://127.0.0.1:8094/api/items ;;
    public) cmd=(target/release/portcullis run -c "$W/gw.yaml"); url=http://127.0.0.1:8094/public/items ;;
    full) cmd=(target/release/portcullis run -c "$W/gw.yaml"); url=http://127.0.0.1:8094/api/items; hdr=(-H "Authorization: Bearer $TOKEN") ;;
    haproxy) command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
      cmd=(haproxy -q -db -f bench/conf/haproxy_jwt.cfg); url=http://127.0.0.1:8083/api/items; hdr=(-H "Authorization: Bearer $TOKEN") ;;
    *) echo "unknown system $sys (bare | public | full | haproxy)" >&2; exit 2 ;;
  esac
  out="bench/callgrind/$sys.out"; rm -f "$out"*
  valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >"$W/$sys.log" 2>&1 & VG=$!; PIDS+=($VG)
  for _ in $(seq 1 300); do curl -fs -o /dev/null "${hdr[@]}" "$url" 2>/dev/null && break; sleep 0.2; done
  wrk -t1 -c8 -d5s "${hdr[@]}" "$url" >/dev/null
  callgrind_control -z "$VG" >/dev/null 2>&1
  reqs=$(wrk -t1 -c8 -d20s "${hdr[@]}" "$url" | awk '/requests in/ {print $1}')
  callgrind_control -d "$VG" >/dev/null 2>&1
  kill -9 "$VG" 2>/dev/null || true; wait "$VG" 2>/dev/null || true
  dump=$(ls "$out".* | tail -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '| %s | %s | %s | %s |\n' "$sys" "$reqs" "$total" "$(( total / reqs ))"
done
