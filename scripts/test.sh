#!/usr/bin/env bash
# Runs every radport test on a fresh Debian machine: installs what the tests talk to
# (scripts/install-deps.sh: DCMTK, GDCM tools, PostgreSQL, cmake), starts a throw-away
# PostgreSQL cluster, then `cargo test` over the whole workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# A throw-away PostgreSQL cluster (scripts/postgres.sh), so that the catalog's tests run on
# PostgreSQL as well as SQLite; TLS too, for the catalog's `sslmode=verify-full` test.
# RADPORT_TEST_POSTGRES_URL set by the caller is used as is.
pg_dir=""
stop_pg() {
  if [ -n "$pg_dir" ]; then
    bash scripts/postgres.sh stop "$pg_dir" immediate >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
if [ -z "${RADPORT_TEST_POSTGRES_URL:-}" ]; then
  pg_dir=$(mktemp -d /tmp/radport-test-pg.XXXXXX)
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  bash scripts/postgres.sh start "$pg_dir" "$pg_port" --no-fsync --tls --max-connections 300
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
