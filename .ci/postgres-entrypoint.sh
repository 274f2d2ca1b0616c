#!/bin/sh
# Starts PostgreSQL as the official postgres image does: on first start, a cluster with the POSTGRES_USER account
# (password POSTGRES_PASSWORD, required) and the POSTGRES_DB database; then the server on every address.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/password
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/password -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm /tmp/password
    echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses=''" start
        createdb -U "$POSTGRES_USER" "$POSTGRES_DB"
        pg_ctl -D "$PGDATA" -w -s -m fast stop
    fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
