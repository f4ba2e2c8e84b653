#!/usr/bin/env bash
# Runs every radport test on a fresh Debian machine: installs what the tests talk to
# (scripts/install-deps.sh: DCMTK, GDCM tools, PostgreSQL, cmake), starts a throw-away
# PostgreSQL cluster, then `cargo test` over the whole workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# A throw-away PostgreSQL cluster, so that the catalog's tests run on PostgreSQL as well as
# SQLite. RADPORT_TEST_POSTGRES_URL set by the caller is used as is.
pg_dir=""
stop_pg() {
  if [ -n "$pg_dir" ]; then
    su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D $pg_dir/data -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
if [ -z "${RADPORT_TEST_POSTGRES_URL:-}" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  pg_dir=$(mktemp -d /tmp/radport-test-pg.XXXXXX)
  chown postgres "$pg_dir"
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  su postgres -s /bin/sh -c "$pg_bin/initdb -D $pg_dir/data -U radport --auth=trust" >/dev/null
  # TLS too (a certificate for 127.0.0.1 from a throw-away CA), for the catalog's
  # `sslmode=verify-full` test; plain connections stay allowed.
  bash scripts/test-certs.sh "$pg_dir"
  chown postgres "$pg_dir/server.key" "$pg_dir/server.crt"
  chmod 600 "$pg_dir/server.key"
  su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/server.log -w \
    -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 \
        -c ssl=on -c ssl_cert_file=$pg_dir/server.crt -c ssl_key_file=$pg_dir/server.key' start" >/dev/null
  export RADPORT_TEST_POSTGRES_URL="postgres://radport@127.0.0.1:$pg_port/postgres"
  export RADPORT_TEST_POSTGRES_CA="$pg_dir/ca.crt"
  echo "== PostgreSQL for the tests on port $pg_port (TLS too)"
fi

# The tests' servers store under TMPDIR: say how much room they have (a full disk fails every
# test that stores, each after its timeout).
echo "== free disk for the tests: $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -n 1 | tr -d ' ')"
echo "== cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"; stop_pg' EXIT
set +e
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one "test result" line per binary).
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | awk '{s+=$2} END {print s+0}')
ignored=$(grep -Eo '; [0-9]+ ignored' "$log" | awk '{s+=$2} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed, $ignored ignored (#[ignore]: not run, listed below)"
# An ignored test is not a passing one: name each, so that none goes unnoticed.
grep -E '^test .* \.\.\. ignored' "$log" | sed 's/^/  /' || true
exit "$status"
