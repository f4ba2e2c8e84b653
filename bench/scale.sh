#!/usr/bin/env bash
# The catalog at hospital scale (crates/bench/src/bin/radport-bench-scale.rs): records
# BENCH_INSTANCES instances (default 1 000 000, BENCH_PER_SERIES=10 per series) through the
# receiver's catalog hot path from BENCH_WRITERS=4 tasks, printing the rate of each tenth; then
# times the gallery (page + facets, p50/p95 of 20 under each filter), a series' detail and the
# stable-series scheduler's tick, and prints the database size per instance.
#
#   bash bench/scale.sh                          SQLite, under BENCH_DIR (/tmp/radport-bench-scale)
#   BENCH_CATALOG_URL=postgres://radport@db/scale bash bench/scale.sh     PostgreSQL
#
# The catalog is kept: a second run resumes recording, or only times the queries.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ "${BENCH_NO_BUILD:-0}" == 1 ]] || cargo build --release -q -p radport-bench --bin radport-bench-scale
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB memory, $(date -u +%F)"
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/radport-bench-scale"
