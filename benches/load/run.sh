#!/usr/bin/env bash
# Loopback load harness: the same wrk load against a tiny upstream directly (an
# nginx of its own), nginx (2 workers, keep-alive upstream) in front of it, and
# Ferrygate in front of it, alternated, medians of $ROUNDS runs, with the CPU each
# proxy spends per request; then form logins and returning-user redirects against
# `ferrygate demo`; peak RSS throughout.
# One command, about 2-3 minutes:   benches/load/run.sh
# Knobs: DURATION (s per run, default 8), ROUNDS (default 3), CONNS (64), THREADS (2),
# PASS_ONLY=1 (stop after the pass-through rounds: the quick loop while tuning).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for pid in "$WORK/nginx.pid" "$WORK/upstream.pid"; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet --bin ferrygate
FG="$ROOT/target/release/ferrygate"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A Redis Cluster node's port: at most 55535, its bus port (10 000 higher) free too.
cluster_port() { python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p <= 55535:
        try:
            b = socket.socket(); b.bind(("127.0.0.1", p + 10000)); b.close(); print(p); break
        except OSError:
            pass
'; }
UP=$(port); NG=$(port); NG2=$(port); FGP=$(port); DEMO=$(port); ADMIN=$(port)

# The tiny upstream (a 13-byte answer): an nginx of its own, so that each proxy under
# test is a separate process talking to a separate upstream process, and the CPU each
# proxy spends per request can be read from its own processes. One worker: the
# upstream takes a core from neither proxy more than it must.
# nginx_conf NAME SERVERS: a 2-worker nginx config around an http block's servers.
nginx_conf() {
  cat <<NGINX
worker_processes 2;
pid $WORK/$1.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
$2
}
NGINX
}
nginx_conf upstream "  server { listen 127.0.0.1:$UP; location / { return 200 \"hello, world\\n\"; } }" | sed 's/^worker_processes 2;/worker_processes 1;/' > "$WORK/upstream.conf"
# nginx as the reverse proxy in front of it: 2 workers, a keep-alive upstream pool,
# and the header work Ferrygate does (X-Forwarded-Proto/-Host, a request id both ways).
nginx_conf nginx "  upstream site { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$NG;
    # The same proxy for HTTP/2 clients (h2c, prior knowledge), for the h2 row.
    listen 127.0.0.1:$NG2 http2;
    location / {
      proxy_pass http://site;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      # The same header work Ferrygate does on every proxied request.
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Request-Id \$request_id;
      add_header X-Request-Id \$request_id;
    }
  }" > "$WORK/nginx.conf"
"$NGINX" -c "$WORK/upstream.conf" -p "$WORK" -g 'daemon on;' 2>>"$WORK/nginx-error.log"
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon on;' 2>>"$WORK/nginx-error.log"

SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)
cat > "$WORK/ferrygate.toml" <<TOML
[server]
listen = ["127.0.0.1:$FGP"]
trusted_proxies = ["127.0.0.1/32"]
[admin]
listen = "127.0.0.1:$ADMIN"
[sessions]
secret = "$SECRET"
cookie_secure = false
[limits]
login_per_ip = "100000000/sec"
login_per_account = "100000000/sec"
[providers.p]
kind = "qwyk"
server = "http://127.0.0.1:9"
organization_id = 1
site_id = 2
[[sites]]
name = "site"
upstream = "http://127.0.0.1:$UP"
provider = "p"
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/in"
[sites.forward_auth]
path = "/_ferrygate/auth"
TOML
# The demo's embedded qwyk provider serves the login runs.
RUST_LOG=warn "$FG" demo --listen "127.0.0.1:$DEMO" >"$WORK/demo.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do grep -q 'provider=' "$WORK/demo.log" 2>/dev/null && break; sleep 0.1; done
PROVIDER=$(grep -o 'provider=[0-9.:]*' "$WORK/demo.log" | head -1 | cut -d= -f2)
sed -i "s|server = \"http://127.0.0.1:9\"|server = \"http://$PROVIDER\"|; s|organization_id = 1|organization_id = 12|; s|site_id = 2|site_id = 34|" "$WORK/ferrygate.toml"
RUST_LOG=warn "$FG" serve --config "$WORK/ferrygate.toml" >"$WORK/fg.log" 2>&1 & FGPID=$!; PIDS+=($FGPID)
# A second gateway for the oidc form logins, against the demo's embedded OpenID issuer.
ISSUER=$(grep -o 'issuer=[0-9.:]*' "$WORK/demo.log" | head -1 | cut -d= -f2)
OFP=$(port)
cat > "$WORK/ferrygate-oidc.toml" <<TOML
[server]
listen = ["127.0.0.1:$OFP"]
[sessions]
secret = "$SECRET"
cookie_secure = false
[limits]
login_per_ip = "100000000/sec"
login_per_account = "100000000/sec"
[providers.o]
kind = "oidc"
issuer = "http://$ISSUER"
client_id = "demo-fabrikam"
client_secret = "demo-fabrikam-secret"
refresh = true
[[sites]]
name = "site"
upstream = "http://127.0.0.1:$UP"
provider = "o"
[sites.login]
path = "/login"
TOML
RUST_LOG=warn "$FG" serve --config "$WORK/ferrygate-oidc.toml" >"$WORK/fg-oidc.log" 2>&1 & PIDS+=($!)
for p in $UP $NG $FGP $DEMO $OFP; do
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

rss() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# Writing 5 to clear_refs resets the peak (VmHWM), so each load gets its own peak.
reset_peak() { echo 5 > "/proc/$1/clear_refs" 2>/dev/null || true; }
cur_rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
IDLE_RSS=$(cur_rss $FGPID)
reset_peak $FGPID

# wrk → "reqs_per_sec p50_ms p99_ms"
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }
load() { # url [lua]
  local out
  if [ -n "${2:-}" ]; then out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$2" "$1"); else out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$1"); fi
  local rps p50 p99 errs
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  errs=$(echo "$out" | awk '/Non-2xx or 3xx/ {print $5}')
  echo "$rps $p50 $p99 ${errs:-0} $(echo "$out" | awk '/requests in/ {print $1}')"
}
# CPU time (user and system clock ticks) of processes and all their threads.
HZ=$(getconf CLK_TCK)
cpu_ticks() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '{u+=$14; s+=$15} END {print u+0, s+0}'; }
nginx_workers() { pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' '; }
ticks_of() { local u=0 s=0 a b; for p in "$@"; do read -r a b < <(cpu_ticks "$p"); u=$((u+a)); s=$((s+b)); done; echo "$u $s"; }
# µs of CPU per request from tick deltas: us_per_req TICKS REQUESTS
us_per_req() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN {printf "%.1f", t*1e6/hz/n}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RPS P50 P99 CPU_FG CPU_FG_USER CPU_NG CPU_NG_USER
for name in direct nginx ferrygate; do RPS[$name]=""; P50[$name]=""; P99[$name]=""; CPU_FG[$name]=""; CPU_FG_USER[$name]=""; CPU_NG[$name]=""; CPU_NG_USER[$name]=""; done
echo "warming up…"
for url in "http://127.0.0.1:$UP/" "http://127.0.0.1:$NG/" "http://127.0.0.1:$FGP/"; do wrk -t2 -c"$CONNS" -d2s "$url" >/dev/null; done
for r in $(seq "$ROUNDS"); do
  for target in direct nginx ferrygate; do
    case $target in direct) url="http://127.0.0.1:$UP/";; nginx) url="http://127.0.0.1:$NG/";; ferrygate) url="http://127.0.0.1:$FGP/";; esac
    read -r fu0 fs0 < <(ticks_of "$FGPID"); read -r nu0 ns0 < <(ticks_of $(nginx_workers))
    read -r rps p50 p99 _ reqs < <(load "$url")
    read -r fu1 fs1 < <(ticks_of "$FGPID"); read -r nu1 ns1 < <(ticks_of $(nginx_workers))
    RPS[$target]+="$rps "; P50[$target]+="$p50 "; P99[$target]+="$p99 "
    CPU_FG[$target]+="$(us_per_req $((fu1-fu0+fs1-fs0)) "$reqs") "; CPU_FG_USER[$target]+="$(us_per_req $((fu1-fu0)) "$reqs") "
    CPU_NG[$target]+="$(us_per_req $((nu1-nu0+ns1-ns0)) "$reqs") "; CPU_NG_USER[$target]+="$(us_per_req $((nu1-nu0)) "$reqs") "
    echo "  round $r $target: $rps req/s, p50 ${p50} ms, p99 ${p99} ms"
  done
done
# HTTP/2 downstream (h2c, prior knowledge; the upstream stays HTTP/1.1): h2load,
# 16 connections × 10 concurrent streams, alternated rounds. No target yet.
declare -A H2
h2rps() { h2load -D "$DURATION" -c 16 -m 10 -t "$THREADS" "$1" 2>/dev/null | awk '/^finished in/ {gsub(",", "", $4); print $4}'; }
for r in $(seq "$ROUNDS"); do
  for target in nginx ferrygate; do
    case $target in nginx) url="http://127.0.0.1:$NG2/";; ferrygate) url="http://127.0.0.1:$FGP/";; esac
    rps=$(h2rps "$url"); H2[$target]+="$rps "
    echo "  round $r h2 $target: $rps req/s"
  done
done
PASS_RSS=$(rss $FGPID)
reset_peak $FGPID
m() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
# The steadier figure on a shared machine: CPU per proxied request, each proxy's
# own processes (the upstream is a separate nginx).
cpu_line() {
  echo "CPU per proxied request (medians): ferrygate $(m "${CPU_FG[ferrygate]}") us (user $(m "${CPU_FG_USER[ferrygate]}")); nginx $(m "${CPU_NG[nginx]}") us (user $(m "${CPU_NG_USER[nginx]}"))"
}
if [ -n "${PASS_ONLY:-}" ]; then
  cpu_line
  N=$(m "${RPS[nginx]}"); F=$(m "${RPS[ferrygate]}")
  awk -v f="$F" -v n="$N" -v d="$(m "${RPS[direct]}")" -v fp="$(m "${P99[ferrygate]}")" -v np="$(m "${P99[nginx]}")" \
    'BEGIN {printf "pass-through: %.2f x nginx, %.2f x direct; p99 %s ms vs nginx %s ms\n", f/n, f/d, fp, np}'
  awk -v f="$(m "${H2[ferrygate]}")" -v n="$(m "${H2[nginx]}")" 'BEGIN {printf "h2 downstream: ferrygate %s req/s, nginx %s req/s, %.2f x nginx\n", f, n, f/n}'
  exit 0
fi

# Returning users: GET /login with a live session (no provider call).
COOKIE=$(curl -s -o /dev/null -D - -X POST -d 'email=alice%40example.com&password=ferrygate-demo' "http://127.0.0.1:$FGP/login" | awk -F': ' 'tolower($1)=="set-cookie" {split($2,a,";"); print a[1]; exit}')
cat > "$WORK/returning.lua" <<LUA
wrk.headers["Cookie"] = "$COOKIE"
LUA
read -r RET_RPS RET_P50 RET_P99 RET_ERR _ < <(load "http://127.0.0.1:$FGP/login" "$WORK/returning.lua")
# Forward-auth checks with a live session, as nginx's auth_request would ask them.
cat > "$WORK/forward-auth.lua" <<LUA
wrk.headers["Cookie"] = "$COOKIE"
wrk.headers["X-Original-URI"] = "/account?tab=2"
wrk.headers["X-Original-Method"] = "GET"
LUA
read -r FA_RPS FA_P50 FA_P99 FA_ERR _ < <(load "http://127.0.0.1:$FGP/_ferrygate/auth" "$WORK/forward-auth.lua")
RET_RSS=$(rss $FGPID)
reset_peak $FGPID
BEFORE_LOGINS=$(cur_rss $FGPID)
# Form logins against the embedded demo qwyk provider, zero think time.
# A refused login is a 303 too: count the redirects back to the form as failures.
# Every request is a different user (the demo provider accepts load-*@example.com):
# one account has only one attempt in flight at a time.
cat > "$WORK/login.lua" <<'LUA'
local threads = {}
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args) failed = 0; n = 0 end
function request()
  n = n + 1
  local body = "email=load-" .. id .. "-" .. n .. "%40example.com&password=ferrygate-demo"
  return wrk.format("POST", "/login", headers, body)
end
function response(status, headers, body)
  local location = headers["Location"] or headers["location"] or ""
  if status ~= 303 or string.find(location, "error=") then failed = failed + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("failed") end
  io.stderr:write("failed logins: " .. total .. "\n")
end
LUA
read -r LOGIN_RPS LOGIN_P50 LOGIN_P99 _ < <(load "http://127.0.0.1:$FGP/login" "$WORK/login.lua" 2>"$WORK/login-failures")
LOGIN_ERR=$(grep -o '[0-9]*$' "$WORK/login-failures" || echo "?")
# The same form logins through the oidc kind: token request, ES256 ID token verified.
read -r OIDC_RPS OIDC_P50 OIDC_P99 _ < <(load "http://127.0.0.1:$OFP/login" "$WORK/login.lua" 2>"$WORK/oidc-failures")
OIDC_ERR=$(grep -o '[0-9]*$' "$WORK/oidc-failures" || echo "?")
LOGIN_RSS=$(rss $FGPID)
SESSIONS_NOW=$(cur_rss $FGPID)
SESSIONS=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^ferrygate_sessions_active / {print $2}')
PER_100K=$(awk -v a="$SESSIONS_NOW" -v b="$BEFORE_LOGINS" -v n="${SESSIONS:-1}" -v i="$IDLE_RSS" 'BEGIN {printf "%.1f", i + (a-b)*100000/n}')

# The same returning-user and login loads with sessions in Redis: one server, then a
# three-primary Redis Cluster (real redis-server processes on loopback ports).
declare -A STORE_RET STORE_LOGIN STORE_ERR
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
  RP=$(port)
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null 2>&1 & PIDS+=($!)
  CPORTS=()
  for i in 1 2 3; do
    cp_=$(cluster_port); CPORTS+=("$cp_"); mkdir -p "$WORK/cluster-$i"
    redis-server --port "$cp_" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/cluster-$i" \
      --cluster-enabled yes --cluster-config-file nodes.conf >/dev/null 2>&1 & PIDS+=($!)
  done
  for p in "$RP" "${CPORTS[@]}"; do for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done; done
  redis-cli --cluster create $(for p in "${CPORTS[@]}"; do echo "127.0.0.1:$p"; done) --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 100); do redis-cli -p "${CPORTS[0]}" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
  for store in redis cluster; do
    case $store in
      redis) target="redis_url = \"redis://127.0.0.1:$RP\"";;
      cluster) target="redis_cluster = [$(for p in "${CPORTS[@]}"; do printf '"redis://127.0.0.1:%s",' "$p"; done | sed 's/,$//')]";;
    esac
    SP=$(port)
    sed -e "s|^listen = \[\"127.0.0.1:$FGP\"\]|listen = [\"127.0.0.1:$SP\"]|" -e "/^\[admin\]/,/^listen/d" \
      -e "s|^cookie_secure = false|cookie_secure = false\nstore = \"redis\"\n$target|" "$WORK/ferrygate.toml" > "$WORK/ferrygate-$store.toml"
    RUST_LOG=warn "$FG" serve --config "$WORK/ferrygate-$store.toml" >"$WORK/fg-$store.log" 2>&1 & SPID=$!; PIDS+=($SPID)
    for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$SP) 2>/dev/null && break; sleep 0.1; done
    SCOOKIE=$(curl -s -o /dev/null -D - -X POST -d 'email=alice%40example.com&password=ferrygate-demo' "http://127.0.0.1:$SP/login" | awk -F': ' 'tolower($1)=="set-cookie" {split($2,a,";"); print a[1]; exit}')
    printf 'wrk.headers["Cookie"] = "%s"\n' "$SCOOKIE" > "$WORK/returning-$store.lua"
    read -r rps _ _ err _ < <(load "http://127.0.0.1:$SP/login" "$WORK/returning-$store.lua")
    STORE_RET[$store]=$rps; STORE_ERR[$store]=${err:-0}
    read -r rps _ _ _ < <(load "http://127.0.0.1:$SP/login" "$WORK/login.lua" 2>/dev/null)
    STORE_LOGIN[$store]=$rps
    kill "$SPID" 2>/dev/null || true
  done
fi

D=$(m "${RPS[direct]}"); N=$(m "${RPS[nginx]}"); F=$(m "${RPS[ferrygate]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); wrk -t$THREADS -c$CONNS -d${DURATION}s, medians of $ROUNDS alternated runs"
printf "%-34s %12s %9s %9s %10s %10s\n" "load" "req/s" "p50 ms" "p99 ms" "vs nginx" "vs direct"
printf "%-34s %12s %9s %9s %10s %10s\n" "direct (upstream alone)" "$D" "$(m "${P50[direct]}")" "$(m "${P99[direct]}")" "$(ratio "$D" "$N")" "1.00"
printf "%-34s %12s %9s %9s %10s %10s\n" "nginx, 2 workers, keep-alive" "$N" "$(m "${P50[nginx]}")" "$(m "${P99[nginx]}")" "1.00" "$(ratio "$N" "$D")"
printf "%-34s %12s %9s %9s %10s %10s\n" "ferrygate pass-through" "$F" "$(m "${P50[ferrygate]}")" "$(m "${P99[ferrygate]}")" "$(ratio "$F" "$N")" "$(ratio "$F" "$D")"
H2F=$(m "${H2[ferrygate]}"); H2N=$(m "${H2[nginx]}")
printf "%-34s %12s %9s %9s %10s\n" "nginx, h2c clients (h2load)" "$H2N" "" "" "1.00"
printf "%-34s %12s %9s %9s %10s\n" "ferrygate, h2c clients (h2load)" "$H2F" "" "" "$(ratio "$H2F" "$H2N")"
printf "%-34s %12s %9s %9s %10s\n" "ferrygate returning-user 303" "$RET_RPS" "$RET_P50" "$RET_P99" "x$(ratio "$RET_RPS" "$F") pass"
printf "%-34s %12s %9s %9s %10s\n" "ferrygate forward-auth check 200" "$FA_RPS" "$FA_P50" "$FA_P99" "x$(ratio "$FA_RPS" "$F") pass"
printf "%-34s %12s %9s %9s %10s\n" "ferrygate form login (demo qwyk)" "$LOGIN_RPS" "$LOGIN_P50" "$LOGIN_P99" "x$(ratio "$LOGIN_RPS" "$F") pass"
printf "%-34s %12s %9s %9s %10s\n" "ferrygate form login (demo oidc)" "$OIDC_RPS" "$OIDC_P50" "$OIDC_P99" "x$(ratio "$OIDC_RPS" "$F") pass"
for store in redis cluster; do
  [ -n "${STORE_RET[$store]:-}" ] || continue
  printf "%-34s %12s %9s %9s %10s\n" "returning-user 303, $store store" "${STORE_RET[$store]}" "" "" "x$(ratio "${STORE_RET[$store]}" "$RET_RPS") memory"
  printf "%-34s %12s %9s %9s %10s\n" "form login, $store store" "${STORE_LOGIN[$store]}" "" "" "x$(ratio "${STORE_LOGIN[$store]}" "$LOGIN_RPS") memory"
done
cpu_line
echo
echo "ferrygate RSS: idle $IDLE_RSS MiB; peak under pass-through $PASS_RSS MiB; under returning users $RET_RSS MiB; under logins $LOGIN_RSS MiB"
echo "live sessions after the login run: $SESSIONS, RSS $SESSIONS_NOW MiB; scaled to 100 000 sessions: $PER_100K MiB"
echo "failures: returning-user non-2xx/3xx ${RET_ERR:-0}; forward-auth non-2xx/3xx ${FA_ERR:-0}; logins not sent to the portal ${LOGIN_ERR}; oidc logins refused ${OIDC_ERR}"
