#!/usr/bin/env bash
# Catalog benchmark for the gallery: seeds an SQLite catalog with 100 000 series (cached in
# BENCH_DIR between runs) and prints the time of the first page, facet counts and filter
# changes. Usage: bench/catalog.sh   (BENCH_SERIES=100000, BENCH_DIR=/tmp/radport-bench-catalog,
# BENCH_UPDATE_DOCS=1 to put the table into docs/performance.md)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BENCH_UPDATE_DOCS=1: the same run through bench/update-docs.sh, which then puts its output
# into the block bench:catalog of docs/performance.md.
[[ "${BENCH_UPDATE_DOCS:-0}" != 1 ]] || exec bash "$ROOT/bench/update-docs.sh" run catalog "${BASH_SOURCE[0]}" "$@"
cd "$ROOT"
cargo build --release -q -p radport-bench
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/radport-bench-catalog"
