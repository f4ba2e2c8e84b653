#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz on the nightly toolchain) for a bounded time and
# prints one row per target: executions, corpus size, result. Fails if any target finds a crash
# (panic, over-allocation, timeout, out of memory); the input is left in fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS=20      seconds per target (default 20)
#   FUZZ_TARGETS="a b"   only these targets (default: all of them)
#   FUZZ_JOBS=2          cargo build jobs
#
# Installs cargo-fuzz if missing (cached in ~/.cargo/bin). The corpus grows in fuzz/corpus/
# (not committed): fuzz/seed.sh seeds it from real files, fuzz/seeds/ holds committed seeds.
# Reproduce a finding (same flags as below, or cargo builds everything again):
#   cd fuzz && cargo +nightly fuzz run -O -a -s none --codegen-units 16 <target> artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-20}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
# Release with debug assertions and overflow checks; no sanitizer (the code is safe Rust, and
# AddressSanitizer made the build of the ~300 crates 40 % slower); 16 codegen units: a
# faster build for somewhat slower runs. `run` must get the same flags or it builds again.
flags=(-O -a -s none --codegen-units 16)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  echo "== installing the $toolchain toolchain"
  rustup toolchain install "$toolchain" --profile minimal
fi

all_targets=$(cargo +"$toolchain" fuzz list)
targets=${FUZZ_TARGETS:-$all_targets}

echo "== building the fuzz targets"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=$(date +%s)
build() {
  if [ -n "${FUZZ_TARGETS:-}" ]; then
    for t in $targets; do cargo +"$toolchain" fuzz build "${flags[@]}" "$t" || return 1; done
  else
    cargo +"$toolchain" fuzz build "${flags[@]}"
  fi
}
if ! CARGO_BUILD_JOBS=${FUZZ_JOBS:-2} build >"$logs/build.log" 2>&1; then
  grep -v '^\s*Compiling ' "$logs/build.log" | tail -n 60
  echo "fuzz build failed"
  exit 1
fi
echo "built in $(($(date +%s) - started))s"

echo "== seeding the corpora"
bash seed.sh

# Longest input per target: whole DICOM heads and NIfTI volumes need room, headers do not.
max_len() {
  case "$1" in
    prescan | ingest_attributes | nifti | upload_layout) echo 65536 ;;
    pdu) echo 16384 ;;
    dimse_command | dimse_identifier | manifests) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

rows=()
failed=0
for t in $targets; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  log="$logs/$t.log"
  set +e
  cargo +"$toolchain" fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
    -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)
  [ -n "$execs" ] || execs=$(grep -Eo '^Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -n 1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result="ok"
  else
    failed=1
    artifact=$(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //')
    kind=$(grep -Eo 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+|memory allocation of [0-9]+ bytes failed' "$log" | head -n 1)
    result="FAILED (${kind:-exit $status}) ${artifact:-}"
    echo "---- last lines of the $t log"
    grep -v '^#[0-9]' "$log" | cut -c1-300 | tail -n 40
  fi
  rows+=("$(printf '%-18s %14s %8s  %s' "$t" "${execs:-?}" "$corpus" "$result")")
done

echo
printf '%-18s %14s %8s  %s\n' target executions corpus result
for r in "${rows[@]}"; do echo "$r"; done
exit "$failed"
