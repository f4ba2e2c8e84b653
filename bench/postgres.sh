#!/usr/bin/env bash
# A throw-away PostgreSQL server for the benchmarks (bench/ingest.sh's receiver postgres,
# bench/cluster.sh), with durable commits as deploy/postgresql.conf: fsync and
# synchronous_commit on. Its databases belong to the user radport, trusted on 127.0.0.1.
#
#   bench/postgres.sh start DIR PORT   a new cluster in DIR/data (DIR emptied first), listening
#                                      on 127.0.0.1:PORT, its socket and log in DIR
#   bench/postgres.sh stop DIR         stops it (fast shutdown)
set -euo pipefail

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n "$PG_BIN" ]] || { echo "PostgreSQL is not installed (scripts/install-deps.sh)" >&2; exit 1; }

# PostgreSQL refuses to run as root: as its own user then.
as_postgres() { if [[ $(id -u) == 0 ]]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }

case "${1:-}" in
    start)
        dir=$2 port=$3
        rm -rf "$dir"
        mkdir -p "$dir"
        [[ $(id -u) != 0 ]] || chown postgres "$dir"
        as_postgres "$PG_BIN/initdb -D $dir/data -U radport --auth=trust" >/dev/null
        as_postgres "$PG_BIN/pg_ctl -D $dir/data -l $dir/server.log -w -o '-p $port -k $dir \
            -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=on -c synchronous_commit=on' start" >/dev/null
        ;;
    stop)
        as_postgres "$PG_BIN/pg_ctl -D $2/data -m fast stop" >/dev/null
        ;;
    *)
        echo "usage: bench/postgres.sh start DIR PORT | stop DIR" >&2
        exit 2
        ;;
esac
