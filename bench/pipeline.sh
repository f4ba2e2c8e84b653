#!/usr/bin/env bash
# Pipeline benchmark: (1) per-step times of the thumbnail and validation on a synthetic
# 512×512 CT series (release build, one thread); (2) the lag from "series stable" to "thumbnail
# and report stored" for a 300-slice CT while the receiver keeps ingesting another series with
# dcmsend at full speed. Prints tables.
#
# Usage: bench/pipeline.sh       (BENCH_SLICES=300, BENCH_BUSY=1000, BENCH_DIR=/tmp/radport-bench-pipeline,
#                                 BENCH_UPDATE_DOCS=1 to put the tables into docs/performance.md)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BENCH_UPDATE_DOCS=1: the same run through bench/update-docs.sh, which then puts its output
# into the block bench:pipeline of docs/performance.md.
[[ "${BENCH_UPDATE_DOCS:-0}" != 1 ]] || exec bash "$ROOT/bench/update-docs.sh" run pipeline "${BASH_SOURCE[0]}" "$@"
BENCH_DIR="${BENCH_DIR:-/tmp/radport-bench-pipeline}"
BENCH_SLICES="${BENCH_SLICES:-300}"
BENCH_BUSY="${BENCH_BUSY:-1000}"
STABLE_AFTER=2
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

cd "$ROOT"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p radport -p radport-testkit -p radport-bench

echo "## 1. Steps"
echo
BENCH_SLICES="$BENCH_SLICES" "$TARGET/radport-bench"
echo

echo "## 2. Lag from stable to stored, while ingesting"
echo
mkdir -p "$BENCH_DIR"
[ -d "$BENCH_DIR/series" ] || "$TARGET/radport-testkit" make-series --out "$BENCH_DIR/series" --count "$BENCH_SLICES" --rows 512 --columns 512 --seed 9301 >/dev/null
[ -d "$BENCH_DIR/busy" ] || "$TARGET/radport-testkit" make-series --out "$BENCH_DIR/busy" --count "$BENCH_BUSY" --rows 512 --columns 512 --seed 9302 >/dev/null
rm -rf "$BENCH_DIR/data"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DICOM=$(port); HTTP=$(port)
RADPORT_ACCESS=open "$TARGET/radport" serve --data-dir "$BENCH_DIR/data" --dicom-port "$DICOM" --http-port "$HTTP" \
  --bind 127.0.0.1 --stable-after "$STABLE_AFTER" >"$BENCH_DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; kill $BUSY 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$HTTP/api/health" >/dev/null 2>&1 && break; sleep 0.1; done

send() { /usr/bin/dcmsend 127.0.0.1 "$DICOM" --aetitle kp-bench --call kp-admin --scan-directories --scan-pattern '*.dcm' --recurse "$1" >/dev/null 2>&1; }
send "$BENCH_DIR/busy" &
BUSY=$!
sleep 0.5
send "$BENCH_DIR/series"
SERIES=$(python3 - "$BENCH_DIR/series" <<'PY'
import sys, glob, struct
# Series Instance UID of the first file: (0020,000E) in explicit VR LE
data = open(sorted(glob.glob(sys.argv[1] + "/*.dcm"))[0], "rb").read()
i = data.find(b"\x20\x00\x0e\x00UI")
n = struct.unpack("<H", data[i+6:i+8])[0]
print(data[i+8:i+8+n].rstrip(b"\0").decode())
PY
)
python3 - "$HTTP" "$SERIES" "$STABLE_AFTER" <<'PY'
import json, sys, time, urllib.request
from datetime import datetime
http, series, stable = sys.argv[1], sys.argv[2], float(sys.argv[3])
def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}") as r:
        return json.load(r)
deadline = time.time() + 120
while True:
    jobs = get(f"/api/jobs?series={series}")["items"]
    done = {j["kind"]: j for j in jobs if j["state"] == "succeeded"}
    if "thumbnail" in done and "validate" in done:
        break
    if time.time() > deadline:
        sys.exit(f"timed out; jobs: {jobs}")
    time.sleep(0.05)
detail = get(f"/api/series/{series}")["series"]
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
stable_at = t(detail["last_arrival"]) + stable
print("| step | done after the series became stable |")
print("|---|---:|")
for kind in ("thumbnail", "validate"):
    print(f"| {kind} ({detail['instance_count']} instances) | {t(done[kind]['finished_at']) - stable_at:.2f} s |")
print("\n(target: both under 1 s; stable = last arrival + --stable-after; the scheduler looks every 0.5 s)")
PY
wait $BUSY || true
