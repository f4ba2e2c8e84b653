#!/usr/bin/env bash
# QIDO-RS benchmark: searches through the DICOMweb engine over an SQLite catalog of 100 000
# series (the catalog bench/catalog.sh seeds, cached in BENCH_DIR between runs); prints p50, p95
# and max per query. Usage: bench/qido.sh   (BENCH_SERIES=100000, BENCH_RUNS=40,
# BENCH_DIR=/tmp/radport-bench-catalog)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p radport-bench
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/radport-bench-qido"
