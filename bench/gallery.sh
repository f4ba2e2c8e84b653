#!/usr/bin/env bash
# Gallery benchmark in a real browser: a `radport serve` whose catalog holds 100 000 series
# (seeded by radport-bench-catalog, cached between runs), the web UI opened in headless
# Chromium (playwright-core of crates/radport/tests/browser), and the time from navigation to
# the first series cards, and from a filter change (modality, dataset, text search, page, clear)
# to the re-rendered cards and facets. Prints markdown tables with the targets.
#
# The copy of the seeded catalog is brought to a steady state first: every series counts as
# already scheduled by the pipeline (else the scheduler would enqueue 200 000 jobs while we
# measure) and as validated (a fifth with errors, a third with warnings); the first 12 series
# of the first page get a thumbnail in the archive, the others have none (the 404 path).
#
# Usage: bench/gallery.sh   (BENCH_SERIES=100000, BENCH_DIR=/tmp/radport-bench-catalog,
#                            GALLERY_RUNS=7 page loads, GALLERY_CYCLES=5 filter sequences,
#                            BENCH_NO_BUILD=1 to skip cargo build,
#                            BENCH_UPDATE_DOCS=1 to put the tables into docs/performance.md)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BENCH_UPDATE_DOCS=1: the same run through bench/update-docs.sh, which then puts its output
# into the block bench:gallery of docs/performance.md.
[[ "${BENCH_UPDATE_DOCS:-0}" != 1 ]] || exec bash "$ROOT/bench/update-docs.sh" run gallery "${BASH_SOURCE[0]}" "$@"
BENCH_SERIES="${BENCH_SERIES:-100000}"
BENCH_DIR="${BENCH_DIR:-/tmp/radport-bench-catalog}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
BROWSER_DIR="$ROOT/crates/radport/tests/browser"

cd "$ROOT"
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install sqlite3" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium is missing: run scripts/install-deps.sh" >&2; exit 1; }
[ -d "$BROWSER_DIR/node_modules/playwright-core" ] \
  || { echo "playwright-core is missing: (cd $BROWSER_DIR && npm ci)" >&2; exit 1; }
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p radport -p radport-bench

echo "## Catalog queries (radport-bench-catalog; seeds $BENCH_DIR/catalog-$BENCH_SERIES.db once)"
echo
BENCH_SERIES="$BENCH_SERIES" BENCH_DIR="$BENCH_DIR" "$TARGET/radport-bench-catalog"
echo

WORK="$BENCH_DIR/gallery"
rm -rf "$WORK"
mkdir -p "$WORK/data/archive/thumbnails"
# `radport serve --data-dir` keeps its catalog in DATA_DIR/catalog.db (WAL): a consistent copy.
sqlite3 "$BENCH_DIR/catalog-$BENCH_SERIES.db" ".backup '$WORK/data/catalog.db'"
sqlite3 "$WORK/data/catalog.db" <<'SQL'
INSERT INTO series_pipeline (series_uid, scheduled_for, scheduled_at)
  SELECT series_uid, last_arrival, last_arrival FROM series WHERE true
  ON CONFLICT (series_uid) DO UPDATE SET scheduled_for = excluded.scheduled_for;
UPDATE series SET
  validation_errors = CASE WHEN rowid % 5 = 0 THEN 2 ELSE 0 END,
  validation_warnings = CASE WHEN rowid % 3 = 0 THEN 1 ELSE 0 END
  WHERE validation_errors IS NULL;
SQL

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DICOM=$(port); HTTP=$(port)
RADPORT_ACCESS=open RADPORT_LOG=warn "$TARGET/radport" serve --data-dir "$WORK/data" --dicom-port "$DICOM" \
  --http-port "$HTTP" --bind 127.0.0.1 >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -fsS "http://127.0.0.1:$HTTP/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$HTTP/api/health" >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }

echo "## Gallery in Chromium ($BENCH_SERIES series)"
echo
node "$ROOT/bench/gallery.mjs" "http://127.0.0.1:$HTTP" "$WORK/data/archive/thumbnails"
if grep -E ' (WARN|ERROR) ' "$WORK/server.log" | head -5 | grep -q .; then
  echo
  echo "server warnings/errors (of $WORK/server.log):"
  grep -E ' (WARN|ERROR) ' "$WORK/server.log" | head -5
fi
