#!/usr/bin/env bash
# NIfTI → DICOM speed: radport-convert vs. Kaapana's approach (SimpleITK slice-by-slice series writing as in its
# itk2dcm, dcmqi's itkimage2segimage for the SEG), on the same files: a 512×512×300 float32 volume and a 5-label
# segmentation (the volume of crates/convert/examples/bench.rs). Both sides read the NIfTI from disk and write
# every DICOM file to disk. Prints a markdown table.
#
# Usage: bench/kaapana-compare.sh
#   BENCH_DIR=/tmp/radport-bench-kaapana   work dir (inputs are cached there between runs)
#   BENCH_DIMS="512 512 300"               volume size
#   BENCH_REPEAT=1                         runs of each step; the table shows the fastest
#   BENCH_NO_BUILD=1                       use the bench example already built in target/release
#   BENCH_UPDATE_DOCS=1                    put the table into docs/performance.md (bench/update-docs.sh)
# Needs: python3 with nibabel + numpy (the test oracles), SimpleITK and dcmqi from PyPI (`pip install SimpleITK
# dcmqi`: dcmqi's wheel ships itkimage2segimage). A missing one is reported in the table, not fatal.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BENCH_UPDATE_DOCS=1: the same run through bench/update-docs.sh, which then puts its output
# into the block bench:kaapana-compare of docs/performance.md.
[[ "${BENCH_UPDATE_DOCS:-0}" != 1 ]] || exec bash "$ROOT/bench/update-docs.sh" run kaapana-compare "${BASH_SOURCE[0]}" "$@"
BENCH_DIR="${BENCH_DIR:-/tmp/radport-bench-kaapana}"
BENCH_DIMS="${BENCH_DIMS:-512 512 300}"
BENCH_REPEAT="${BENCH_REPEAT:-1}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
HELPER="$ROOT/bench/kaapana-compare.py"
read -r NX NY NZ <<<"$BENCH_DIMS"
DATA="$BENCH_DIR/${NX}x${NY}x${NZ}"
mkdir -p "$DATA"

cd "$ROOT"
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  cargo build --release -q -p radport-convert --example bench
fi
if [[ ! -f "$DATA/image.nii" || ! -f "$DATA/labels.nii" ]]; then
  python3 "$HELPER" gen "$DATA" "$NX" "$NY" "$NZ"
fi

# Fastest of BENCH_REPEAT runs of a command whose last line has "KEY=SECONDS": prints "SECONDS|that run's line"
# ("NA|line" when a run fails or has no figure).
best() {
  local key="$1"; shift
  local b="" bline="" line s
  for _ in $(seq "$BENCH_REPEAT"); do
    line="$("$@" 2>&1 | tail -n 1)" || true
    s="$(grep -o "${key}=[0-9.NA]*" <<<"$line" | head -n 1 | cut -d= -f2)"
    if [[ -z "$s" || "$s" == "NA" ]]; then
      echo "NA|$line"
      return
    fi
    if [[ -z "$b" ]] || awk -v a="$s" -v b="$b" 'BEGIN { exit !(a < b) }'; then
      b="$s"
      bline="$line"
    fi
  done
  echo "$b|$bline"
}

sync
RP="$(best total_s "$TARGET/examples/bench" --files "$DATA/image.nii" "$DATA/labels.nii" "$DATA/radport")"
RP_LINE="${RP#*|}"
RP_SERIES="$(grep -o 'series_s=[0-9.]*' <<<"$RP_LINE" | cut -d= -f2)"
RP_SEG="$(grep -o 'seg_s=[0-9.]*' <<<"$RP_LINE" | cut -d= -f2)"
RP_TOTAL="${RP%%|*}"

if python3 -c 'import SimpleITK' 2>/dev/null; then
  sync
  SITK="$(best seconds python3 "$HELPER" sitk "$DATA")"
  SITK_S="${SITK%%|*}"
  SITK_NOTE="SimpleITK $(python3 -c 'import SimpleITK as s; print(s.Version.VersionString())')"
else
  SITK_S="NA"
  SITK_NOTE="SimpleITK not installed (pip install SimpleITK)"
fi

if [[ "$SITK_S" == "NA" ]]; then
  DCMQI_S="NA"
  DCMQI_NOTE="needs the SimpleITK series as its reference images"
elif command -v itkimage2segimage >/dev/null; then
  sync
  DCMQI="$(best seconds python3 "$HELPER" dcmqi "$DATA")"
  DCMQI_S="${DCMQI%%|*}"
  DCMQI_NOTE="dcmqi $(itkimage2segimage --version 2>&1 | grep -o 'v[0-9][0-9.]*' | head -n 1)"
  [[ "$DCMQI_S" == "NA" ]] && DCMQI_NOTE="${DCMQI#*|}"
else
  DCMQI_S="NA"
  DCMQI_NOTE="itkimage2segimage not found (pip install dcmqi)"
fi

sum() { if [[ "$1" == NA || "$2" == NA ]]; then echo NA; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; fi; }
ratio() { if [[ "$1" == NA || "$2" == NA ]]; then echo "–"; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f×", a / b }'; fi; }
KP_TOTAL="$(sum "$SITK_S" "$DCMQI_S")"

echo
echo "NIfTI → DICOM, ${NX}×${NY}×${NZ} float32 + 5-label segmentation, files read from and written to disk"
echo "($(nproc) cores; fastest of $BENCH_REPEAT run(s); data in $DATA)"
echo
echo "| step | radport-convert | Kaapana approach | radport faster by |"
echo "| --- | ---: | ---: | ---: |"
echo "| image series ($NZ files) | ${RP_SERIES} s | ${SITK_S} s | $(ratio "$SITK_S" "$RP_SERIES") |"
echo "| SEG (5 segments) | ${RP_SEG} s | ${DCMQI_S} s | $(ratio "$DCMQI_S" "$RP_SEG") |"
echo "| total | ${RP_TOTAL} s | ${KP_TOTAL} s | $(ratio "$KP_TOTAL" "$RP_TOTAL") |"
echo
echo "- Kaapana series: ${SITK_NOTE}, int16 cast (float fractions truncated); radport: uint16 + rescale, $(grep -o 'max_abs_error=[0-9.e-]*' <<<"$RP_LINE")"
echo "- Kaapana SEG: ${DCMQI_NOTE}"
