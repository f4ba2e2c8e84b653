#!/usr/bin/env bash
# Catalog benchmark for the gallery: seeds an SQLite catalog with 100 000 series (cached in
# BENCH_DIR between runs) and prints the time of the first page, facet counts and filter
# changes. Usage: bench/catalog.sh   (BENCH_SERIES=100000, BENCH_DIR=/tmp/radport-bench-catalog)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p radport-bench
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/radport-bench-catalog"
