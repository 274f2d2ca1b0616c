#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the test suite and benchmarks: `start` prints its URL, `status` exits 0
# when it is up, `stop` ends it.
# Installs Debian's `postgresql` when no server binaries are present. Runs as the `postgres` user when started
# as root (CI). Its own port (FEEDGEN_PG_PORT, default 5433) and data dir under /tmp: it never touches another server.
set -euo pipefail
PORT="${FEEDGEN_PG_PORT:-5433}"
DATA="${FEEDGEN_PG_DATA:-/tmp/feedgen-pg-$PORT}"
DBNAME="${FEEDGEN_PG_DB:-feedgen_test}"

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN="$(find_bin)"
if [ -z "$BIN" ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    BIN="$(find_bin)"
fi
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-start}" in
start)
    if ! as_owner "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
        if [ ! -f "$DATA/PG_VERSION" ]; then
            mkdir -p "$DATA"
            [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
            as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        fi
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -s start -o \
            "-h 127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    as_owner "$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'" | grep -q 1 ||
        as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DBNAME"
    echo "postgresql://postgres@127.0.0.1:$PORT/$DBNAME"
    ;;
status)  # exits 0 when the server is up
    as_owner "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"
    ;;
stop)
    if [ -f "$DATA/postmaster.pid" ]; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -s stop; fi
    ;;
*)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
