#!/usr/bin/env bash
# A throw-away PostgreSQL server: the tests' (scripts/test.sh) and the benchmarks'
# (bench/ingest.sh's receiver postgres, bench/cluster.sh). Durable commits by default, as
# deploy/postgresql.conf has them: fsync and synchronous_commit on. Its databases belong to
# the user radport, trusted on 127.0.0.1.
#
#   scripts/postgres.sh start DIR PORT [OPTION…]
#       a new cluster in DIR/data (DIR emptied first), listening on 127.0.0.1:PORT, its
#       socket and log in DIR. Options:
#         --no-fsync            fsync off (the tests: nothing there needs to survive a crash)
#         --tls                 TLS as well, with a certificate for 127.0.0.1 from a
#                               throw-away CA (scripts/test-certs.sh; DIR/ca.crt to verify it);
#                               plain connections stay allowed
#         --max-connections N   [default: 100]
#   scripts/postgres.sh stop DIR [fast|immediate]   stops it [default: fast]
set -euo pipefail

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n "$PG_BIN" ]] || { echo "PostgreSQL is not installed (scripts/install-deps.sh)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)

# PostgreSQL refuses to run as root: as its own user then.
as_postgres() { if [[ $(id -u) == 0 ]]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
usage() {
    echo "usage: scripts/postgres.sh start DIR PORT [--no-fsync] [--tls] [--max-connections N]" \
        "| stop DIR [fast|immediate]" >&2
    exit 2
}

case "${1:-}" in
    start)
        [[ $# -ge 3 ]] || usage
        dir=$2 port=$3
        shift 3
        fsync=on tls=0 max_connections=100
        while [[ $# -gt 0 ]]; do
            case "$1" in
                --no-fsync) fsync=off ;;
                --tls) tls=1 ;;
                --max-connections) max_connections=${2:?}; shift ;;
                *) usage ;;
            esac
            shift
        done
        rm -rf "$dir"
        mkdir -p "$dir"
        [[ $(id -u) != 0 ]] || chown postgres "$dir"
        as_postgres "$PG_BIN/initdb -D $dir/data -U radport --auth=trust" >/dev/null
        settings="-c listen_addresses=127.0.0.1 -c max_connections=$max_connections"
        settings+=" -c fsync=$fsync -c synchronous_commit=on"
        if [[ $tls == 1 ]]; then
            bash "$here/test-certs.sh" "$dir"
            [[ $(id -u) != 0 ]] || chown postgres "$dir/server.key" "$dir/server.crt"
            chmod 600 "$dir/server.key"
            settings+=" -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
        fi
        as_postgres "$PG_BIN/pg_ctl -D $dir/data -l $dir/server.log -w -o '-p $port -k $dir $settings' start" >/dev/null
        ;;
    stop)
        [[ $# -ge 2 ]] || usage
        as_postgres "$PG_BIN/pg_ctl -D $2/data -m ${3:-fast} stop" >/dev/null
        ;;
    *)
        usage
        ;;
esac
