#!/usr/bin/env bash
# WADO-RS benchmark: a 500-slice CT (512×512, 16 bit: 0.5 MB a slice) sent to a release radport,
# then, with the page cache dropped before each run (needs root), alternating:
#   - the disk: `dd` of a 1 GiB file with O_DIRECT (its sequential read rate), and `cat` of the
#     series' 500 stored files (what any reader of these files gets);
#   - WADO-RS: the series as multipart/related with curl (cold, then again from the page cache:
#     the ceiling of the HTTP path on this machine);
#   - OHIF's first image: the series metadata, then frame 1 of the middle instance.
# Prints min / median / max of each. Usage: bench/wado.sh   (BENCH_REPEAT=5, BENCH_COUNT=500,
# BENCH_DIR=/tmp/radport-bench-wado)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-/tmp/radport-bench-wado}"
BENCH_COUNT="${BENCH_COUNT:-500}"
BENCH_REPEAT="${BENCH_REPEAT:-5}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RADPORT="$TARGET_DIR/release/radport"
TESTKIT="$TARGET_DIR/release/radport-testkit"
cd "$ROOT"
[[ "${BENCH_NO_BUILD:-0}" == 1 ]] || cargo build --release -q -p radport -p radport-testkit
[[ "$(id -u)" == 0 ]] || { echo "bench/wado.sh drops the page cache: run it as root" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {printf "%s %s %s\n", a[1], a[int((NR+1)/2)], a[NR]}'; }

rm -rf "$BENCH_DIR/data" && mkdir -p "$BENCH_DIR/series"
if [[ "$(find "$BENCH_DIR/series" -name '*.dcm' | wc -l)" != "$BENCH_COUNT" ]]; then
    rm -rf "$BENCH_DIR/series" && mkdir -p "$BENCH_DIR/series"
    "$TESTKIT" make-series --out "$BENCH_DIR/series" --count "$BENCH_COUNT" --rows 512 --columns 512 \
        --seed 7401 --patient-id WADO-BENCH >/dev/null
fi
DICOM_PORT=$(free_port); HTTP_PORT=$(free_port)
RADPORT_ACCESS=open NO_COLOR=1 setsid "$RADPORT" serve --data-dir "$BENCH_DIR/data" \
    --dicom-port "$DICOM_PORT" --http-port "$HTTP_PORT" --bind 127.0.0.1 \
    >"$BENCH_DIR/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$HTTP_PORT/api/health" >/dev/null 2>&1 && break; sleep 0.2; done
/usr/bin/dcmsend -q 127.0.0.1 "$DICOM_PORT" --aetitle kp-bench --call kp-admin \
    --scan-directories --scan-pattern '*.dcm' --recurse "$BENCH_DIR/series"
BASE="http://127.0.0.1:$HTTP_PORT/dicomweb"
STUDY=$(curl -fsS "$BASE/studies?PatientID=WADO-BENCH" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["0020000D"]["Value"][0])')
SERIES=$(curl -fsS "$BASE/studies/$STUDY/series" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["0020000E"]["Value"][0])')
MIDDLE=$(curl -fsS "$BASE/studies/$STUDY/series/$SERIES/instances" | python3 -c 'import json,sys; a=json.load(sys.stdin); print(a[len(a)//2]["00080018"]["Value"][0])')
FILES=$(find "$BENCH_DIR/data/archive/instances" -type f)
BYTES=$(cat $FILES | wc -c)
REFERENCE="$BENCH_DIR/reference.bin"
[[ -f "$REFERENCE" ]] || dd if=/dev/urandom of="$REFERENCE" bs=1M count=1024 status=none

: >"$BENCH_DIR/dd" ; : >"$BENCH_DIR/cat" ; : >"$BENCH_DIR/wado" ; : >"$BENCH_DIR/first" ; : >"$BENCH_DIR/warm" ; : >"$BENCH_DIR/wado-warm"
for run in $(seq "$BENCH_REPEAT"); do
    drop_caches
    dd if="$REFERENCE" of=/dev/null bs=4M iflag=direct 2>&1 | awk '/copied/ {printf "%.0f\n", $1 / $(NF-3) / 1e6}' >>"$BENCH_DIR/dd"
    drop_caches
    start=$(date +%s.%N); cat $FILES >/dev/null; end=$(date +%s.%N)
    echo "$BYTES $start $end" | awk '{printf "%.0f\n", $1 / ($3 - $2) / 1e6}' >>"$BENCH_DIR/cat"
    drop_caches
    curl -fsS -o /dev/null -w '%{size_download} %{time_total}\n' \
        -H 'Accept: multipart/related; type="application/dicom"' "$BASE/studies/$STUDY/series/$SERIES" \
        | awk '{printf "%.0f\n", $1 / $2 / 1e6}' >>"$BENCH_DIR/wado"
    curl -fsS -o /dev/null -w '%{size_download} %{time_total}\n' \
        -H 'Accept: multipart/related; type="application/dicom"' "$BASE/studies/$STUDY/series/$SERIES" \
        | awk '{printf "%.0f\n", $1 / $2 / 1e6}' >>"$BENCH_DIR/wado-warm"
    drop_caches
    t1=$(curl -fsS -o /dev/null -w '%{time_total}' "$BASE/studies/$STUDY/series/$SERIES/metadata")
    t2=$(curl -fsS -o /dev/null -w '%{time_total}' \
        -H 'Accept: multipart/related; type=application/octet-stream; transfer-syntax=*' \
        "$BASE/studies/$STUDY/series/$SERIES/instances/$MIDDLE/frames/1")
    echo "$t1 $t2" | awk '{printf "%.1f\n", ($1 + $2) * 1000}' >>"$BENCH_DIR/first"
    t3=$(curl -fsS -o /dev/null -w '%{time_total}' \
        -H 'Accept: multipart/related; type=application/octet-stream; transfer-syntax=*' \
        "$BASE/studies/$STUDY/series/$SERIES/instances/$MIDDLE/frames/1")
    echo "$t3" | awk '{printf "%.1f\n", $1 * 1000}' >>"$BENCH_DIR/warm"
done
read -r dmin dmed dmax < <(median <"$BENCH_DIR/dd")
read -r cmin cmed cmax < <(median <"$BENCH_DIR/cat")
read -r wmin wmed wmax < <(median <"$BENCH_DIR/wado")
read -r vmin vmed vmax < <(median <"$BENCH_DIR/wado-warm")
read -r fmin fmed fmax < <(median <"$BENCH_DIR/first")
read -r hmin hmed hmax < <(median <"$BENCH_DIR/warm")
echo "WADO-RS of a $BENCH_COUNT-slice CT ($(( BYTES / 1000000 )) MB stored), page cache dropped before each run, $BENCH_REPEAT runs, release build"
echo
echo "| what | min | median | max |"
echo "|---|---:|---:|---:|"
echo "| disk: dd of 1 GiB, O_DIRECT (MB/s) | $dmin | $dmed | $dmax |"
echo "| disk: cat of the series' stored files (MB/s) | $cmin | $cmed | $cmax |"
echo "| WADO-RS series, multipart/related (MB/s) | $wmin | $wmed | $wmax |"
echo "| WADO-RS series again, from the page cache (MB/s) | $vmin | $vmed | $vmax |"
echo "| OHIF's first image: series metadata + frame 1, cold (ms) | $fmin | $fmed | $fmax |"
echo "| one frame, warm (ms) | $hmin | $hmed | $hmax |"
echo
echo "WADO-RS / dd: $(awk -v w="$wmed" -v d="$dmed" 'BEGIN {printf "%.2f", w / d}')   WADO-RS / cat: $(awk -v w="$wmed" -v c="$cmed" 'BEGIN {printf "%.2f", w / c}')   (targets: >= 0.80 of the disk's sequential read rate; first image < 200 ms)"
