#!/usr/bin/env bash
# Retrieve benchmark: DCMTK getscu (C-GET) of one synthetic 512×512 CT series (500 slices by
# default) from radport (release build) and from Orthanc (Debian's package, started here with a
# configuration of its own), the same files loaded into both, on the same machine. Runs
# alternate between the two servers; prints min/median/max seconds and the ratio of medians,
# once with getscu as installed (Nagle's algorithm on) and once with TCP_NODELAY=1.
#
# Usage: bench/retrieve.sh   (BENCH_SLICES=500, BENCH_RUNS=5, BENCH_DIR=/tmp/radport-bench-retrieve,
#                             BENCH_NO_BUILD=1 to use the binaries already built,
#                             BENCH_UPDATE_DOCS=1 to put the table into docs/performance.md)
# Needs: dcmtk (getscu, dcmsend), orthanc (apt-get install orthanc), curl, python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BENCH_UPDATE_DOCS=1: the same run through bench/update-docs.sh, which then puts its output
# into the block bench:retrieve of docs/performance.md.
[[ "${BENCH_UPDATE_DOCS:-0}" != 1 ]] || exec bash "$ROOT/bench/update-docs.sh" run retrieve "${BASH_SOURCE[0]}" "$@"
BENCH_DIR="${BENCH_DIR:-/tmp/radport-bench-retrieve}"
BENCH_SLICES="${BENCH_SLICES:-500}"
BENCH_RUNS="${BENCH_RUNS:-5}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
GETSCU=/usr/bin/getscu   # pip's pynetdicom installs a getscu of its own on PATH
DCMSEND=/usr/bin/dcmsend
ORTHANC="$(command -v Orthanc || echo /usr/sbin/Orthanc)"
for tool in "$GETSCU" "$DCMSEND" "$ORTHANC"; do
  [ -x "$tool" ] || { echo "missing $tool: apt-get install dcmtk orthanc" >&2; exit 1; }
done

cd "$ROOT"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p radport -p radport-testkit

mkdir -p "$BENCH_DIR"
SERIES="$BENCH_DIR/series"
[ -d "$SERIES" ] || "$TARGET/radport-testkit" make-series --out "$SERIES" --count "$BENCH_SLICES" \
  --rows 512 --columns 512 --seed 9401 >/dev/null
read -r STUDY SERIES_UID < <(python3 - "$SERIES" <<'EOF'
import sys, pathlib
# The testkit's UIDs, read from the first file without pydicom: (0020,000D) and (0020,000E),
# explicit VR little endian.
data = next(iter(sorted(pathlib.Path(sys.argv[1]).glob("*.dcm")))).read_bytes()
def uid(tag):
    i = data.index(tag)
    n = int.from_bytes(data[i + 6:i + 8], "little")
    return data[i + 8:i + 8 + n].rstrip(b"\0 ").decode()
print(uid(b"\x20\x00\x0d\x00UI"), uid(b"\x20\x00\x0e\x00UI"))
EOF
)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
R_DICOM=$(port); R_HTTP=$(port); O_DICOM=$(port); O_HTTP=$(port)
rm -rf "$BENCH_DIR/radport" "$BENCH_DIR/orthanc"
mkdir -p "$BENCH_DIR/orthanc"
RADPORT_ACCESS=open RADPORT_LOG=warn "$TARGET/radport" serve --data-dir "$BENCH_DIR/radport" \
  --dicom-port "$R_DICOM" --http-port "$R_HTTP" --bind 127.0.0.1 >"$BENCH_DIR/radport.log" 2>&1 &
RADPORT=$!
cat >"$BENCH_DIR/orthanc/config.json" <<EOF
{
  "Name": "bench",
  "StorageDirectory": "$BENCH_DIR/orthanc/storage",
  "IndexDirectory": "$BENCH_DIR/orthanc/index",
  "StorageCompression": false,
  "HttpPort": $O_HTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomAet": "ORTHANC",
  "DicomPort": $O_DICOM,
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowGet": true,
  "DicomAlwaysAllowStore": true,
  "DicomModalities": {
    "getscu": { "AET": "GETSCU", "Host": "127.0.0.1", "Port": 104, "AllowGet": true }
  },
  "Plugins": []
}
EOF
"$ORTHANC" "$BENCH_DIR/orthanc/config.json" >"$BENCH_DIR/orthanc.log" 2>&1 &
ORTHANC_PID=$!
trap 'kill $RADPORT $ORTHANC_PID 2>/dev/null || true; rm -rf /dev/shm/radport-bench-retrieve' EXIT
for _ in $(seq 200); do
  curl -fsS "http://127.0.0.1:$R_HTTP/api/health" >/dev/null 2>&1 \
    && curl -fsS "http://127.0.0.1:$O_HTTP/system" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS -X POST "http://127.0.0.1:$R_HTTP/api/projects" -H 'content-type: application/json' \
  -d '{"name":"bench"}' >/dev/null
"$DCMSEND" -aet LOADER -aec kp-bench 127.0.0.1 "$R_DICOM" --scan-directories "$SERIES" >/dev/null
"$DCMSEND" -aet LOADER -aec ORTHANC 127.0.0.1 "$O_DICOM" --scan-directories "$SERIES" >/dev/null

# Received files go to memory, so the disk of the receiving side is not what is measured.
OUT=/dev/shm/radport-bench-retrieve
get() { # NODELAY called-AE port → seconds (NODELAY=1: getscu with Nagle's algorithm off)
  rm -rf "$OUT"; mkdir -p "$OUT"
  local start end n
  start=$(date +%s.%N)
  if [ "$1" = 1 ]; then export TCP_NODELAY=1; else unset TCP_NODELAY; fi
  "$GETSCU" -aet GETSCU -aec "$2" -S -k QueryRetrieveLevel=SERIES -k "StudyInstanceUID=$STUDY" \
    -k "SeriesInstanceUID=$SERIES_UID" -od "$OUT" 127.0.0.1 "$3" >/dev/null 2>&1
  end=$(date +%s.%N)
  unset TCP_NODELAY
  n=$(find "$OUT" -type f | wc -l)
  [ "$n" = "$BENCH_SLICES" ] || { echo "$2 sent $n of $BENCH_SLICES instances" >&2; exit 1; }
  python3 -c "print(f'{$end - $start:.3f}')"
}
get 0 kp-bench "$R_DICOM" >/dev/null   # warm-up of both (page cache, connections)
get 0 ORTHANC "$O_DICOM" >/dev/null
MB=$(du -sm "$SERIES" | cut -f1)
echo "C-GET of a $BENCH_SLICES-slice 512x512 CT series ($MB MB) with DCMTK getscu, $BENCH_RUNS runs each, alternating between the servers; received files written to /dev/shm."
# Two ways to run getscu: as installed (Nagle's algorithm on, as DCMTK's tools have it), and
# with TCP_NODELAY=1 (Nagle off), where a server's delayed ACKs cost nothing.
for NODELAY in 0 1; do
  R_TIMES=(); O_TIMES=()
  for _ in $(seq "$BENCH_RUNS"); do
    R_TIMES+=("$(get "$NODELAY" kp-bench "$R_DICOM")")
    O_TIMES+=("$(get "$NODELAY" ORTHANC "$O_DICOM")")
  done
  python3 - "$BENCH_SLICES" "$NODELAY" "${R_TIMES[*]}" "${O_TIMES[*]}" "$("$ORTHANC" --version | head -1 | sed 's|.*/||')" <<'EOF'
import statistics, sys
n, nodelay, r, o, orthanc = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
r = [float(x) for x in r]; o = [float(x) for x in o]
print()
print("## getscu with TCP_NODELAY=1 (Nagle off)" if nodelay else "## getscu as installed (Nagle on)")
print()
print("| server | min s | median s | max s | instances/s (median) |")
print("|---|---:|---:|---:|---:|")
for name, t in (("radport (release)", r), (orthanc, o)):
    m = statistics.median(t)
    print(f"| {name} | {min(t):.3f} | {m:.3f} | {max(t):.3f} | {n / m:.0f} |")
print()
print(f"radport / Orthanc (ratio of the medians): {statistics.median(o) / statistics.median(r):.2f}x")
EOF
done
echo
echo "radport's peak memory over the load and every retrieve: $(awk '/^VmHWM:/ {printf "%.0f MB", $2 / 1024}' "/proc/$RADPORT/status")."
