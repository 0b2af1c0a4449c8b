#!/usr/bin/env bash
# Side-by-side benchmark: Berth vs CNCF Distribution 2.8.2 (Debian's `docker-registry`), both on
# 127.0.0.1 in the same run, same blob file, same filesystem.
#
#   bash bench/run.sh
#
# Measures, for each server:
#   a. monolithic push of a 1 GiB random blob (POST, then PUT <Location>?digest=, body streamed
#      by curl -T), wall time; plus the floor: single-core sha256 of the same file
#      (openssl dgst -sha256 and sha256sum);
#   b. pull of that blob (curl -o /dev/null), median of BENCH_PULL_RUNS; nginx serving the
#      same file too when nginx is installed (BENCH_NGINX=1 installs it with apt-get);
#   c. wrk GET of a small OCI image manifest by tag and by digest, 16 and 64 connections;
#   d. peak RSS (VmHWM) of each server over the whole run.
# Prints a markdown report and writes it to bench/out/results-<date>.md.
#
# Environment:
#   BERTH_BIN          berth binary (default: <repo>/target/release/berth)
#   DIST_BIN           Distribution binary (default: /usr/bin/docker-registry)
#   BENCH_SERVERS      servers to run (default: "dist berth")
#   BENCH_DIR          parent of the scratch directory (default: /tmp); blob file + data dirs live there
#   BENCH_BLOB_MB      blob size in MiB (default: 1024)
#   BENCH_BLOB_FILE    reuse an existing blob file instead of generating one
#   BENCH_PUSH_RUNS    pushes per server (default: 5)
#   BENCH_PULL_RUNS    pulls per server and client, after one untimed warm-up pull (default: 5)
#   BENCH_FLOOR_RUNS   runs of each floor measurement (sha256, fsync'd copy) (default: 3)
#   BENCH_WRK_SECONDS  duration of each wrk run (default: 10)
#   BENCH_WRK_CONNS    wrk connection counts (default: "16 64")
#   BENCH_NGINX        1 = apt-get install nginx if missing; 0 = never run nginx (default: run if installed)
#   BENCH_KEEP         1 = keep the scratch directory
set -euo pipefail

BENCH_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_SRC/.." && pwd)"

BERTH_BIN="${BERTH_BIN:-$REPO_ROOT/target/release/berth}"
DIST_BIN="${DIST_BIN:-/usr/bin/docker-registry}"
BENCH_SERVERS="${BENCH_SERVERS:-dist berth}"
BENCH_BLOB_MB="${BENCH_BLOB_MB:-1024}"
BENCH_PUSH_RUNS="${BENCH_PUSH_RUNS:-5}"
BENCH_PULL_RUNS="${BENCH_PULL_RUNS:-5}"
BENCH_FLOOR_RUNS="${BENCH_FLOOR_RUNS:-3}"
BENCH_WRK_SECONDS="${BENCH_WRK_SECONDS:-10}"
BENCH_WRK_CONNS="${BENCH_WRK_CONNS:-16 64}"
BENCH_NGINX="${BENCH_NGINX:-}"
BENCH_KEEP="${BENCH_KEEP:-0}"
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

is_int() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
for v in BENCH_BLOB_MB BENCH_PUSH_RUNS BENCH_PULL_RUNS BENCH_FLOOR_RUNS BENCH_WRK_SECONDS; do
  is_int "${!v}" || die "$v must be a positive integer (got '${!v}')"
done
for c in $BENCH_WRK_CONNS; do is_int "$c" || die "BENCH_WRK_CONNS: '$c' is not a positive integer"; done
for s in $BENCH_SERVERS; do
  [[ "$s" == dist || "$s" == berth ]] || die "BENCH_SERVERS: unknown server '$s' (use dist and/or berth)"
done
want() { [[ " $BENCH_SERVERS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found${2:+: $2}"; }
need curl "apt-get install curl"
need wrk "apt-get install wrk"
need openssl "apt-get install openssl"
need sha256sum "coreutils"
need python3
need awk
if want dist; then
  [[ -x "$DIST_BIN" ]] || die "Distribution not found at $DIST_BIN (apt-get install docker-registry, or set DIST_BIN)"
fi
if want berth; then
  [[ -x "$BERTH_BIN" ]] || die "berth binary not found at $BERTH_BIN (cargo build --release, or set BERTH_BIN; BENCH_SERVERS=dist runs Distribution only)"
fi

NGINX_BIN=""
if [[ "$BENCH_NGINX" != 0 ]]; then
  if command -v nginx >/dev/null 2>&1; then
    NGINX_BIN="$(command -v nginx)"
  elif [[ "$BENCH_NGINX" == 1 ]]; then
    log "installing nginx with apt-get (BENCH_NGINX=1)"
    [[ "$(id -u)" == 0 ]] || die "BENCH_NGINX=1 needs root to apt-get install nginx"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null; } \
      || die "apt-get install nginx failed"
    # Debian's package starts a system nginx on :80; the benchmark only uses its own instance.
    NGINX_BIN="$(command -v nginx || true)"
    [[ -n "$NGINX_BIN" ]] || die "nginx still not found after apt-get install"
  fi
fi

# ---------------------------------------------------------------- scratch space + cleanup
mkdir -p "${BENCH_DIR:-/tmp}"
WORK="$(mktemp -d "${BENCH_DIR:-/tmp}/berth-bench.XXXXXX")"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
declare -A PID=()

cleanup() {
  local rc=$?
  set +e
  for name in "${!PID[@]}"; do
    local p="${PID[$name]}"
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    fi
  done
  if [[ "$BENCH_KEEP" == 1 ]]; then
    log "scratch directory kept: $WORK"
  elif [[ $rc -ne 0 ]]; then
    # Keep the logs and configs for the post-mortem, not the gigabytes.
    rm -rf "$WORK/blob.bin" "$WORK/write-floor.bin" "$WORK/dist-data" "$WORK/berth-data" "$WORK/nginx/www"
    log "logs kept in $WORK (*.log, *.out, configs)"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Response header value (case-insensitive name) from a `curl -D` dump.
hdr() { awk -v n="$(tr 'A-Z' 'a-z' <<<"$2"):" 'tolower($1) == n { sub(/^[^:]*:[ \t]*/, ""); sub(/\r$/, ""); v = $0 } END { print v }' "$1"; }
put() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.4f}")' "$1" "$2"; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
alive() { kill -0 "${PID[$1]}" 2>/dev/null || die "$1 (pid ${PID[$1]}) died; log: $WORK/$1.log
$(tail -n 20 "$WORK/$1.log" 2>/dev/null)"; }
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- machine
# CPU accounting, to tell how much of the machine something else used during the run: user +
# system ticks from /proc/stat, minus what the servers (/proc/PID/stat) and this script with its
# reaped children (curl, wrk, openssl, ...; bash `times`) used. Interrupt time (mostly loopback
# networking in softirq, which the kernel does not charge to any process) and steal are
# reported on their own; kernel threads (writeback) still count as "other".
cpu_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4, $7 + $8, $9 }' /proc/stat; }
proc_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"; }
self_ticks() { # this shell + reaped children, in ticks
  times | awk -v hz="$(getconf CLK_TCK)" '{ for (i = 1; i <= 2; i++) { split($i, a, /m|s/); t += (a[1] * 60 + a[2]) * hz } } END { printf "%d\n", t }'
}
read -r CPU_BUSY0 CPU_IRQ0 CPU_STEAL0 < <(cpu_ticks)
SELF0="$(self_ticks)"
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.nproc "$(nproc)"
put meta.cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
put meta.sha_ni "$(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
put meta.mem "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
put meta.kernel "$(uname -r)"
put meta.fs "$(df -PT "$WORK" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
put meta.wrk_version "$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
put meta.curl_version "$(curl --version | awk 'NR == 1 { print $2 }')"
put meta.openssl_version "$(openssl version)"
put meta.load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
put meta.push_runs "$BENCH_PUSH_RUNS"
put meta.floor_runs "$BENCH_FLOOR_RUNS"
put meta.pull_runs "$BENCH_PULL_RUNS"
put meta.wrk_seconds "$BENCH_WRK_SECONDS"
put meta.wrk_conns "$BENCH_WRK_CONNS"

# ---------------------------------------------------------------- blob file + hash floor
BLOB_BYTES=$((BENCH_BLOB_MB * 1024 * 1024))
if [[ -n "${BENCH_BLOB_FILE:-}" ]]; then
  BLOB="$BENCH_BLOB_FILE"
  [[ -f "$BLOB" ]] || die "BENCH_BLOB_FILE=$BLOB does not exist"
  BLOB_BYTES="$(stat -c %s "$BLOB")"
else
  BLOB="$WORK/blob.bin"
  log "generating a $BENCH_BLOB_MB MiB random blob"
  head -c "$BLOB_BYTES" /dev/urandom >"$BLOB"
fi
put blob.bytes "$BLOB_BYTES"
cat "$BLOB" >/dev/null # page cache: every reader below sees the same warm file

log "hash floor: openssl dgst -sha256 and sha256sum, $BENCH_FLOOR_RUNS runs each"
DIGEST=""
ossl=() sums=()
for _ in $(seq "$BENCH_FLOOR_RUNS"); do
  t0="$(now)"; h="$(openssl dgst -sha256 -r "$BLOB" | awk '{ print $1 }')"; t1="$(now)"
  ossl+=("$(elapsed "$t0" "$t1")")
  t0="$(now)"; h2="$(sha256sum "$BLOB" | awk '{ print $1 }')"; t1="$(now)"
  sums+=("$(elapsed "$t0" "$t1")")
  [[ "$h" == "$h2" ]] || die "openssl and sha256sum disagree on $BLOB"
  DIGEST="sha256:$h"
done
put floor.openssl.runs "${ossl[*]}"
put floor.sha256sum.runs "${sums[*]}"
log "blob digest $DIGEST; openssl ${ossl[*]} s; sha256sum ${sums[*]} s"

# Second reference (not a target): copying the file to the data filesystem with an fsync at
# the end, what any durable push has to pay for on top of hashing unless the two overlap.
log "write floor: dd conv=fsync of the same file, $BENCH_FLOOR_RUNS runs"
ddt=()
for _ in $(seq "$BENCH_FLOOR_RUNS"); do
  sync
  t0="$(now)"; dd if="$BLOB" of="$WORK/write-floor.bin" bs=1M conv=fsync status=none; t1="$(now)"
  ddt+=("$(elapsed "$t0" "$t1")")
  rm -f "$WORK/write-floor.bin"
done
sync
put floor.fsync_copy.runs "${ddt[*]}"
log "dd conv=fsync ${ddt[*]} s"

# ---------------------------------------------------------------- servers
start_dist() {
  local port dir="$WORK/dist-data"
  port="$(free_port)"
  mkdir -p "$dir"
  cat >"$WORK/dist-config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
EOF
  "$DIST_BIN" serve "$WORK/dist-config.yml" >"$WORK/dist.log" 2>&1 &
  PID[dist]=$!
  BASE[dist]="http://127.0.0.1:$port"
  local i
  for i in $(seq 100); do
    alive dist
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "${BASE[dist]}/v2/" || true)" == 200 ]] && break
    [[ $i == 100 ]] && die "Distribution did not answer GET /v2/ with 200 within 10 s; log: $WORK/dist.log"
    sleep 0.1
  done
  put meta.dist_version "$("$DIST_BIN" --version 2>&1 | head -n 1)"
}

start_berth() {
  local dir="$WORK/berth-data" line i
  mkdir -p "$dir"
  # Berth's data plane requires ECR registry tokens and explicit repositories; the benchmark
  # runs it with a known root key, create-on-push, and sends the token on every request
  # (Distribution, configured without auth, ignores the header).
  BERTH_ACCOUNT_ID=111111111111 BERTH_ROOT_ACCESS_KEY_ID=AKIABENCHMARK0000000 \
    BERTH_ROOT_SECRET_ACCESS_KEY=benchmark-secret-key-0000000000000000000 BERTH_CREATE_ON_PUSH=true \
    "$BERTH_BIN" serve --listen 127.0.0.1:0 --data-dir "$dir" >"$WORK/berth.out" 2>"$WORK/berth.log" &
  PID[berth]=$!
  for i in $(seq 300); do
    alive berth
    line="$(grep -m1 -o 'berth listening on http://127\.0\.0\.1:[0-9]*' "$WORK/berth.out" || true)"
    [[ -n "$line" ]] && break
    [[ $i == 300 ]] && die "berth did not print 'berth listening on http://127.0.0.1:PORT' within 30 s; stdout: $WORK/berth.out, stderr: $WORK/berth.log"
    sleep 0.1
  done
  BASE[berth]="${line#berth listening on }"
  local pw
  pw="$(BERTH_ACCOUNT_ID=111111111111 "$BERTH_BIN" admin get-login-password --data-dir "$dir" 2>>"$WORK/berth.log")" \
    || die "berth admin get-login-password failed; see $WORK/berth.log"
  BENCH_AUTH="Basic $(printf 'AWS:%s' "$pw" | base64 -w0)"
  export BENCH_AUTH
  local code
  code="$(curl -s -o /dev/null -D "$WORK/v2.hdr" -w '%{http_code}' "${BASE[berth]}/v2/" || true)"
  [[ "$code" == 200 ]] || die "berth: GET ${BASE[berth]}/v2/ returned '$code', expected 200"
  put meta.berth_version "$("$BERTH_BIN" --version 2>&1 | head -n 1)"
  put meta.berth_binary "$(stat -c '%y' "$BERTH_BIN" | cut -d. -f1), sha256 $(sha256sum "$BERTH_BIN" | cut -c1-12)"
  put meta.berth_git "$(git -C "$REPO_ROOT" log -1 --format='%h %cd' --date=format:'%Y-%m-%d %H:%M' 2>/dev/null || echo '?')$(
    [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (work tree modified)')"
}

# Every curl call carries Berth's registry token once it is known (see start_berth).
BENCH_AUTH="${BENCH_AUTH:-}"
curl() {
  if [[ -n "$BENCH_AUTH" ]]; then command curl -H "Authorization: $BENCH_AUTH" "$@"; else command curl "$@"; fi
}

declare -A BASE=()
SERVERS=()
for s in dist berth; do
  want "$s" || continue
  log "starting $s"
  "start_$s"
  SERVERS+=("$s")
  put "$s.started" 1
  put "$s.rss.start_kb" "$(proc_kb "${PID[$s]}" VmRSS)"
  log "$s: pid ${PID[$s]}, ${BASE[$s]}"
done
[[ ${#SERVERS[@]} -gt 0 ]] || die "no server to benchmark (BENCH_SERVERS='$BENCH_SERVERS')"

# ---------------------------------------------------------------- registry helpers

# Absolute upload URL with ?digest= appended, from POST /v2/<repo>/blobs/uploads/.
start_upload() { # srv repo digest
  local srv=$1 repo=$2 digest=$3 h="$WORK/post.hdr" code loc
  code="$(curl -sS -X POST -o /dev/null -D "$h" -w '%{http_code}' "${BASE[$srv]}/v2/$repo/blobs/uploads/")" \
    || die "$srv: POST /v2/$repo/blobs/uploads/ failed (curl)"
  [[ "$code" == 202 ]] || die "$srv: POST /v2/$repo/blobs/uploads/ returned $code, expected 202"
  loc="$(hdr "$h" Location)"
  [[ -n "$loc" ]] || die "$srv: POST /v2/$repo/blobs/uploads/ returned no Location header"
  [[ "$loc" == /* ]] && loc="${BASE[$srv]}$loc"
  [[ "$loc" == *\?* ]] && loc="$loc&digest=$digest" || loc="$loc?digest=$digest"
  echo "$loc"
}

# Monolithic upload: POST then PUT with the file streamed as the body. `Expect:` is cleared
# so curl does not wait for a 100 Continue (Go and Rust clients do not send Expect either).
# With a 5th argument, curl's --trace-time verbose log goes there (see commit_tail).
upload_file() { # srv repo file digest [trace]
  local srv=$1 repo=$2 file=$3 digest=$4 trace=${5:-/dev/null} url code h="$WORK/put.hdr" v=()
  [[ "$trace" != /dev/null ]] && v=(-v --trace-time)
  url="$(start_upload "$srv" "$repo" "$digest")"
  code="$(curl -sS "${v[@]}" -X PUT -T "$file" -H 'Content-Type: application/octet-stream' -H 'Expect:' \
    -o "$WORK/put.body" -D "$h" -w '%{http_code}' "$url" 2>"$trace")" \
    || die "$srv: PUT upload of $file to $repo failed (curl): $(grep -v '^[0-9:.]* [*<>{}]' "$trace" | tail -n 5)"
  [[ "$code" == 201 ]] || die "$srv: PUT ${url%%\?*}?digest=... returned $code, expected 201: $(head -c 500 "$WORK/put.body")"
  local got
  got="$(hdr "$h" Docker-Content-Digest)"
  [[ -z "$got" || "$got" == "$digest" ]] || die "$srv: PUT returned Docker-Content-Digest $got, expected $digest"
}

# Seconds between curl sending the last body byte and receiving the response status line: the
# server's commit (finish hashing, flush/fsync, rename, metadata) after the bytes arrived.
commit_tail() { # trace
  awk 'function t(s, a) { split(s, a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
       /We are completely uploaded and fine/ { up = t($1) }
       / < HTTP\/[0-9.]+ [0-9]+/ && up { if (!resp) resp = t($1) }
       END { if (up && resp) { d = resp - up; if (d < 0) d += 86400; printf "%.4f\n", d } }' "$1"
}

check_blob() { # srv repo digest bytes
  local srv=$1 repo=$2 digest=$3 bytes=$4 h="$WORK/head.hdr" code
  code="$(curl -sS -I -o /dev/null -D "$h" -w '%{http_code}' "${BASE[$srv]}/v2/$repo/blobs/$digest")" || die "$srv: HEAD blob failed (curl)"
  [[ "$code" == 200 ]] || die "$srv: HEAD /v2/$repo/blobs/$digest returned $code, expected 200"
  [[ "$(hdr "$h" Content-Length)" == "$bytes" ]] || die "$srv: HEAD /v2/$repo/blobs/$digest: Content-Length $(hdr "$h" Content-Length), expected $bytes"
}

# ---------------------------------------------------------------- a. push
# Runs alternate between servers; each run pushes into a fresh repository (bench/blob,
# bench/blob-2, ...) so that no server can answer from an existing repository link. `sync`
# first so that no run pays for the previous run's dirty pages.
declare -A PUSH=() PUSHTAIL=()
for i in $(seq "$BENCH_PUSH_RUNS"); do
  repo=bench/blob; [[ $i == 1 ]] || repo="bench/blob-$i"
  for s in "${SERVERS[@]}"; do
    sync
    alive "$s"
    t0="$(now)"
    upload_file "$s" "$repo" "$BLOB" "$DIGEST" "$WORK/push.trace"
    t1="$(now)"
    t="$(elapsed "$t0" "$t1")"
    tail_s="$(commit_tail "$WORK/push.trace")"
    PUSH[$s]="${PUSH[$s]:-} $t"
    [[ -n "$tail_s" ]] && PUSHTAIL[$s]="${PUSHTAIL[$s]:-} $tail_s"
    check_blob "$s" "$repo" "$DIGEST" "$BLOB_BYTES"
    log "push $i/$BENCH_PUSH_RUNS $s: $t s (response ${tail_s:-?} s after the last body byte)"
  done
done
for s in "${SERVERS[@]}"; do
  put "$s.push.runs" "${PUSH[$s]# }"
  [[ -n "${PUSHTAIL[$s]:-}" ]] && put "$s.push.tail.runs" "${PUSHTAIL[$s]# }"
done
sync

# ---------------------------------------------------------------- b. pull
pull_once() { # label url -> seconds
  local out code size t
  out="$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$2")" || die "$1: GET $2 failed (curl)"
  read -r code size t <<<"$out"
  [[ "$code" == 200 ]] || die "$1: GET $2 returned $code, expected 200"
  [[ "$size" == "$BLOB_BYTES" ]] || die "$1: GET $2 returned $size bytes, expected $BLOB_BYTES"
  echo "$t"
}

NGINX_URL=""
if [[ -n "$NGINX_BIN" ]]; then
  port="$(free_port)"
  mkdir -p "$WORK/nginx/www" "$WORK/nginx/tmp"
  ln "$BLOB" "$WORK/nginx/www/blob" 2>/dev/null || ln -s "$BLOB" "$WORK/nginx/www/blob"
  cat >"$WORK/nginx/nginx.conf" <<EOF
$([[ "$(id -u)" == 0 ]] && echo 'user root;')
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log error;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    root $WORK/nginx/www;
  }
}
EOF
  "$NGINX_BIN" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >>"$WORK/nginx.log" 2>&1 &
  PID[nginx]=$!
  for i in $(seq 100); do
    alive nginx
    [[ "$(curl -s -I -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/blob" || true)" == 200 ]] && break
    [[ $i == 100 ]] && die "nginx did not serve /blob within 10 s; log: $WORK/nginx.log"
    sleep 0.1
  done
  NGINX_URL="http://127.0.0.1:$port/blob"
  put meta.nginx_version "$("$NGINX_BIN" -v 2>&1 | sed 's|.*nginx/||')"
else
  if [[ "$BENCH_NGINX" == 0 ]]; then put nginx.skipped "BENCH_NGINX=0"; else put nginx.skipped "nginx not installed; BENCH_NGINX=1 installs it"; fi
fi

# Two clients: curl -o /dev/null, and bench/pull.py, a raw-socket reader that needs less CPU
# than curl (which saturates near 1 GB/s here and then caps every server alike).
# One untimed warm-up pull per server first, so that every server starts from a warm page
# cache; the kernel's disk reads during the timed pulls are recorded (pgpgin) and reported.
declare -A PULL=() RAWPULL=()
targets=("${SERVERS[@]}"); [[ -n "$NGINX_URL" ]] && targets+=(nginx)
pull_url() { if [[ "$1" == nginx ]]; then echo "$NGINX_URL"; else echo "${BASE[$1]}/v2/bench/blob/blobs/$DIGEST"; fi; }
for s in "${targets[@]}"; do pull_once "$s" "$(pull_url "$s")" >/dev/null; done
pgpgin() { awk '$1 == "pgpgin" { print $2 }' /proc/vmstat; }
pg0="$(pgpgin)"
for i in $(seq "$BENCH_PULL_RUNS"); do
  for s in "${targets[@]}"; do
    alive "$s"
    url="$(pull_url "$s")"
    t="$(pull_once "$s" "$url")"
    PULL[$s]="${PULL[$s]:-} $t"
    r="$(python3 "$BENCH_SRC/pull.py" "$url" "$BLOB_BYTES" 2>&1)" || die "$s: raw GET $url failed: $r"
    RAWPULL[$s]="${RAWPULL[$s]:-} $r"
    log "pull $i/$BENCH_PULL_RUNS $s: curl $t s, raw client $r s"
  done
done
for s in "${!PULL[@]}"; do put "$s.pull.runs" "${PULL[$s]# }"; put "$s.rawpull.runs" "${RAWPULL[$s]# }"; done
put meta.pull_disk_read_mib "$(( ($(pgpgin) - pg0) / 1024 ))"
if [[ -n "$NGINX_URL" ]]; then
  kill -TERM "${PID[nginx]}" 2>/dev/null || true
  wait "${PID[nginx]}" 2>/dev/null || true
  unset 'PID[nginx]'
fi

# ---------------------------------------------------------------- c. manifest GET
# A small OCI image: config blob + one layer blob, pushed first, then the manifest with a tag.
python3 - "$WORK" <<'EOF'
import hashlib, json, os, sys
w = sys.argv[1]
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}, separators=(",", ":")).encode()
layer = os.urandom(4096)
def desc(media_type, data):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": desc("application/vnd.oci.image.config.v1+json", config),
    "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    "annotations": {"org.opencontainers.image.title": "berth-bench"},
}, indent=2).encode()
for name, data in (("config.json", config), ("layer.bin", layer), ("manifest.json", manifest)):
    with open(os.path.join(w, name), "wb") as f:
        f.write(data)
EOF
sha() { echo "sha256:$(sha256sum "$1" | awk '{ print $1 }')"; }
CONFIG_DIGEST="$(sha "$WORK/config.json")"
LAYER_DIGEST="$(sha "$WORK/layer.bin")"
MANIFEST_DIGEST="$(sha "$WORK/manifest.json")"
MANIFEST_BYTES="$(stat -c %s "$WORK/manifest.json")"
MREPO=bench/app
TAG=v1

for s in "${SERVERS[@]}"; do
  upload_file "$s" "$MREPO" "$WORK/config.json" "$CONFIG_DIGEST"
  upload_file "$s" "$MREPO" "$WORK/layer.bin" "$LAYER_DIGEST"
  code="$(curl -sS -X PUT -H "Content-Type: $OCI_MANIFEST" --data-binary "@$WORK/manifest.json" \
    -o "$WORK/mput.body" -D "$WORK/mput.hdr" -w '%{http_code}' "${BASE[$s]}/v2/$MREPO/manifests/$TAG")" \
    || die "$s: PUT manifest failed (curl)"
  [[ "$code" == 201 ]] || die "$s: PUT /v2/$MREPO/manifests/$TAG returned $code, expected 201: $(head -c 500 "$WORK/mput.body")"
  got="$(hdr "$WORK/mput.hdr" Docker-Content-Digest)"
  [[ "$got" == "$MANIFEST_DIGEST" ]] || die "$s: PUT manifest returned Docker-Content-Digest '$got', expected $MANIFEST_DIGEST"
  # Both references must serve the exact bytes with the OCI media type before wrk hammers them.
  for ref in "$TAG" "$MANIFEST_DIGEST"; do
    code="$(curl -sS -H "Accept: $OCI_MANIFEST" -o "$WORK/mget.body" -D "$WORK/mget.hdr" -w '%{http_code}' \
      "${BASE[$s]}/v2/$MREPO/manifests/$ref")" || die "$s: GET manifest $ref failed (curl)"
    [[ "$code" == 200 ]] || die "$s: GET /v2/$MREPO/manifests/$ref returned $code, expected 200"
    cmp -s "$WORK/mget.body" "$WORK/manifest.json" || die "$s: GET /v2/$MREPO/manifests/$ref did not return the pushed bytes"
    ct="$(hdr "$WORK/mget.hdr" Content-Type)"
    [[ "$ct" == "$OCI_MANIFEST" ]] || die "$s: GET /v2/$MREPO/manifests/$ref: Content-Type '$ct', expected $OCI_MANIFEST"
  done
  log "$s: manifest $MANIFEST_DIGEST ($MANIFEST_BYTES bytes) pushed as $MREPO:$TAG"
done

for s in "${SERVERS[@]}"; do
  for ref in tag digest; do
    if [[ $ref == tag ]]; then r="$TAG"; else r="$MANIFEST_DIGEST"; fi
    for c in $BENCH_WRK_CONNS; do
      alive "$s"
      out="$(BENCH_ACCEPT="$OCI_MANIFEST" wrk -t2 -c"$c" -d"${BENCH_WRK_SECONDS}s" --timeout 5s --latency \
        -s "$BENCH_SRC/wrk-accept.lua" "${BASE[$s]}/v2/$MREPO/manifests/$r" 2>&1)" \
        || die "$s: wrk failed: $out"
      stats="$(grep -m1 '^BENCHSTATS ' <<<"$out" | sed 's/^BENCHSTATS //')"
      [[ -n "$stats" ]] || die "$s: wrk printed no BENCHSTATS line: $out"
      printf '%s\n' "$out" >>"$WORK/wrk.log"
      put "$s.wrk.$ref.$c" "$stats"
      log "wrk $s by $ref, $c conns: $stats"
    done
  done
done

# ---------------------------------------------------------------- d. peak RSS
read -r CPU_BUSY1 CPU_IRQ1 CPU_STEAL1 < <(cpu_ticks)
SELF1="$(self_ticks)"
srv_ticks=0
for s in "${SERVERS[@]}"; do
  t="$(proc_ticks "${PID[$s]}")"
  srv_ticks=$((srv_ticks + t))
  put "$s.cpu_s" "$(awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }')"
done
# nginx was reaped already, so it is in `times`; the servers still run, so they are not.
awk -v b=$((CPU_BUSY1 - CPU_BUSY0)) -v irq=$((CPU_IRQ1 - CPU_IRQ0)) -v st=$((CPU_STEAL1 - CPU_STEAL0)) \
  -v me=$((SELF1 - SELF0)) -v sv="$srv_ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { o = b - me - sv; if (o < 0) o = 0;
    printf "meta.cpu_busy_s\t%.1f\nmeta.cpu_other_s\t%.1f\nmeta.cpu_irq_s\t%.1f\nmeta.cpu_steal_s\t%.1f\n",
      b / hz, o / hz, irq / hz, st / hz }' >>"$RESULTS"
for s in "${SERVERS[@]}"; do
  alive "$s"
  put "$s.rss.hwm_kb" "$(proc_kb "${PID[$s]}" VmHWM)"
  put "$s.rss.end_kb" "$(proc_kb "${PID[$s]}" VmRSS)"
done
put meta.load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
put note.dist "Distribution config: filesystem storage, in-memory blob descriptor cache, log level error, access log off, upload purging off."
want berth && put note.berth "Berth: \`berth serve --listen 127.0.0.1:0 --data-dir DIR\`, default configuration (log: ${BERTH_LOG:-${RUST_LOG:-info}})."

# ---------------------------------------------------------------- report
mkdir -p "$BENCH_SRC/out"
REPORT="$BENCH_SRC/out/results-$(date +%Y%m%d-%H%M%S).md"
python3 "$BENCH_SRC/report.py" "$RESULTS" >"$REPORT"
cp "$RESULTS" "${REPORT%.md}.tsv"
echo
cat "$REPORT"
echo
log "report written to $REPORT (raw numbers: ${REPORT%.md}.tsv)"
