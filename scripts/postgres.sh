#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests, on 127.0.0.1 only.
#   scripts/postgres.sh start DIR   -> initdb + start in DIR, prints the connection URL
#   scripts/postgres.sh stop DIR    -> stop it (the caller removes DIR)
#   scripts/postgres.sh resume DIR  -> start a stopped one again, on the same port (outage tests)
# Runs the server as the `postgres` user when invoked as root (initdb refuses root).
# With BERTH_PG_TLS_DIR set (a directory holding server.crt and server.key), the server also
# speaks TLS with that certificate.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?directory}
bin=""
for d in $(command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)") /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { bin=$d; break; }
done
[ -n "$bin" ] || { echo "postgres.sh: no initdb/pg_ctl found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "'$bin/initdb' -D '$dir/data' -U berth --auth=trust -E UTF8 >'$dir/initdb.log' 2>&1"
    tls=""
    if [ -n "${BERTH_PG_TLS_DIR:-}" ]; then
      cp "$BERTH_PG_TLS_DIR/server.crt" "$BERTH_PG_TLS_DIR/server.key" "$dir/data/"
      chmod 600 "$dir/data/server.key"
      [ "$(id -u)" = 0 ] && chown postgres "$dir/data/server.crt" "$dir/data/server.key"
      tls="-c ssl=on"
    fi
    as_pg "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 \
      -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c fsync=off $tls\" start >/dev/null"
    echo "$port" > "$dir/port"
    echo "postgres://berth@127.0.0.1:$port/postgres"
    ;;
  resume)
    port=$(cat "$dir/port")
    as_pg "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 \
      -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c fsync=off\" start >/dev/null"
    ;;
  stop)
    as_pg "'$bin/pg_ctl' -D '$dir/data' -m fast -w stop >/dev/null" || true
    ;;
  *) echo "usage: $0 start|stop|resume DIR" >&2; exit 2 ;;
esac
