#!/usr/bin/env bash
# The floor of durable ingest on this machine, without DICOM (crates/bench/src/bin/
# radport-bench-floor.rs): loopback senders send 0.5 MB messages and wait for an answer, a
# receiver answers each once it is in the page cache (`cache`, storescp's way), once it is on
# disk (`direct`: one O_DIRECT write after the message, group fdatasync) or once it is on disk
# having written it while it arrived (`stream`). The `direct` rows are what any receiver that
# syncs before it answers can reach here; the `cache` rows what one that never syncs can.
#
# Usage: bench/floor.sh
#
# Environment:
#   FLOOR_DIR=/tmp/radport-floor   where the packs and files go (the disk under test)
#   FLOOR_REPEAT=5                 runs of each mode and sender count, modes alternating, the
#                                  order rotated each repetition; the table shows the median
#                                  and min–max
#   FLOOR_SENDERS="1 4 16"         sender counts
#   FLOOR_MODES="cache direct stream"
#   FLOOR_MESSAGES=1000            messages per run (split among the senders)
#   FLOOR_BYTES=525000             message size (a 512x512 16-bit CT slice and its attributes)
#   FLOOR_TURN_US, FLOOR_CHUNK_US  senders pause this long before each message and after each
#                                  128 KiB (unset: they do not; 150 and 60 come near dcmsend);
#                                  FLOOR_BUSY=1: they spin meanwhile instead of sleeping
#   FLOOR_SPACE, FLOOR_SPACE_MB    the shared file's space before the writes: grow (default),
#                                  written, allocated, allocated-keep-size, ahead (see the
#                                  binary's doc); FLOOR_SERIAL=1|sync one writer at a time
#   BENCH_NO_BUILD=1               use target/release/radport-bench-floor as it is
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${FLOOR_DIR:-/tmp/radport-floor}
REPEAT=${FLOOR_REPEAT:-5}
SENDERS=${FLOOR_SENDERS:-1 4 16}
MODES=${FLOOR_MODES:-cache direct stream}
MESSAGES=${FLOOR_MESSAGES:-1000}
BYTES=${FLOOR_BYTES:-525000}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FLOOR="$TARGET_DIR/release/radport-bench-floor"
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p radport-bench --bin radport-bench-floor)
fi
[[ -x $FLOOR ]] || { echo "missing $FLOOR (cargo build --release -p radport-bench)" >&2; exit 1; }
mkdir -p "$DIR"
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
read -r -a modes <<<"$MODES"
for rep in $(seq 1 "$REPEAT"); do
    for senders in $SENDERS; do
        # Rotate the order of the modes by one each repetition.
        for i in "${!modes[@]}"; do
            mode=${modes[$(( (i + rep) % ${#modes[@]} ))]}
            sync
            line=$("$FLOOR" "$mode" "$senders" $(( MESSAGES / senders )) "$DIR" "$BYTES")
            echo "[floor] #$rep $line" >&2
            # mode senders msg/s p50 p99 cpu
            awk '{print $1, $3, $6, $11, $14, $18}' <<<"$line" >>"$RESULTS"
        done
    done
done
echo "Durable-ingest floor: $MESSAGES messages of $BYTES bytes per run over loopback TCP into $DIR, $REPEAT runs each (median, min–max);"
echo "$(date -u +%Y-%m-%d) $(nproc) CPUs; $(awk '/^MemAvailable:/ {printf "available %.1f GB", $2 / 1048576}' /proc/meminfo)."
echo
echo "| mode | senders | messages/s (median) | min–max | p50 ms | p99 ms | receiver CPU ms/msg |"
echo "|---|---:|---:|---|---:|---:|---:|"
for senders in $SENDERS; do
    for mode in "${modes[@]}"; do
        awk -v m="$mode" -v s="$senders" '$1 == m && $2 == s' "$RESULTS" | sort -k3 -n | awk -v m="$mode" -v s="$senders" '
            { rate[NR] = $3; p50[NR] = $4; p99[NR] = $5; cpu[NR] = $6 }
            END {
                if (NR == 0) exit
                mid = int((NR + 1) / 2)
                # p50/p99/CPU of the run with the median rate
                printf "| %s | %d | %.0f | %.0f–%.0f | %.3f | %.3f | %.3f |\n", m, s, rate[mid], rate[1], rate[NR], p50[mid], p99[mid], cpu[mid]
            }'
    done
done
