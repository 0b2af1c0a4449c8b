#!/usr/bin/env bash
# A throwaway S3-compatible server (s3s-fs) for the tests, on 127.0.0.1 only.
#   scripts/s3.sh start DIR   -> start s3s-fs storing under DIR/data; prints `export` lines
#                                (BERTH_S3_ENDPOINT, BERTH_S3_REGION, BERTH_S3_ACCESS_KEY_ID,
#                                BERTH_S3_SECRET_ACCESS_KEY, BERTH_TEST_S3_DATA) for `eval`
#   scripts/s3.sh stop DIR    -> stop it (the caller removes DIR)
# Install s3s-fs with scripts/install-test-deps.sh (cargo install s3s-fs@0.14.1).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?directory}
bin=$(command -v s3s-fs 2>/dev/null || true)
[ -n "$bin" ] || [ ! -x "$HOME/.cargo/bin/s3s-fs" ] || bin="$HOME/.cargo/bin/s3s-fs"
case "$cmd" in
  start)
    [ -n "$bin" ] || { echo "s3.sh: s3s-fs not found (bash scripts/install-test-deps.sh)" >&2; exit 1; }
    mkdir -p "$dir/data"
    access_key=berth-test
    secret_key=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    RUST_LOG=${S3S_LOG:-warn} nohup "$bin" --host 127.0.0.1 --port "$port" \
      --access-key "$access_key" --secret-key "$secret_key" "$dir/data" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 200); do
      if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
        echo "export BERTH_S3_ENDPOINT=http://127.0.0.1:$port"
        echo "export BERTH_S3_REGION=us-east-1"
        echo "export BERTH_S3_ACCESS_KEY_ID=$access_key"
        echo "export BERTH_S3_SECRET_ACCESS_KEY=$secret_key"
        # Where s3s-fs keeps objects (bucket/key as files): tests look at stored bytes there.
        echo "export BERTH_TEST_S3_DATA=$(cd "$dir/data" && pwd)"
        exit 0
      fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.05
    done
    echo "s3.sh: s3s-fs did not start; its log:" >&2
    cat "$dir/server.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$dir/pid" ]; then
      kill "$(cat "$dir/pid")" 2>/dev/null || true
      rm -f "$dir/pid"
    fi
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
