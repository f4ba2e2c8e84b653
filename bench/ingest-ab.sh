#!/usr/bin/env bash
# Quick A/B of two radport receivers (two builds, or one build with two sets of flags): each
# round runs A then B (then B then A in the next round) against a fresh data directory, with
# one sender and with four, Nagle off (AB_NAGLE=1: on), and prints every run and the
# medians. For comparing a change before the full bench/ingest.sh (which adds storescp, both
# Nagle rows at once, latency, memory and the machine's state).
#
# Usage: bench/ingest-ab.sh BINARY_A "FLAGS_A" BINARY_B "FLAGS_B"
#   e.g. bench/ingest-ab.sh /tmp/radport-before "--ingest-durability journal" \
#                           target/release/radport "--ingest-durability packs"
#
# Environment:
#   AB_ROUNDS=3                  rounds (each runs A and B in both modes; A first in odd
#                                rounds, B first in even ones: an even number balances them)
#   AB_DIR=/tmp/radport-ab       work dir: the series (made with radport-testkit), the runs
#   AB_PORT=11990                DICOM port (the HTTP port is AB_PORT + 7000)
#   TESTKIT=target/release/radport-testkit
#   AB_NAGLE=1                   the senders keep Nagle's algorithm (dcmsend's default) rather
#                                than TCP_NODELAY=1
#
# CPU per instance is the receiver's user + system time from /proc over the run.
#
# Each round runs A and B back to back, so the machine's drift (on the development VM the same
# build's CPU per instance has moved by a quarter over an evening) touches both alike: the
# last table compares them round by round — the median and range of B/A over the rounds —
# which is what to read for a change smaller than that drift.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -eq 4 ]] || { sed -n '2,17p' "$0"; exit 2; }
BIN_A=$1 FLAGS_A=$2 BIN_B=$3 FLAGS_B=$4
ROUNDS=${AB_ROUNDS:-3}
DIR=${AB_DIR:-/tmp/radport-ab}
PORT=${AB_PORT:-11990}
HTTP=$((PORT + 7000))
TESTKIT=${TESTKIT:-$ROOT/target/release/radport-testkit}
# What the senders' environment holds: dcmtk turns Nagle's algorithm off for TCP_NODELAY=1.
SENDER_ENV=TCP_NODELAY=1
[[ "${AB_NAGLE:-0}" != 1 ]] || SENDER_ENV=RADPORT_AB_NAGLE=1
for tool in dcmsend curl python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[[ -x $TESTKIT ]] || { echo "needs $TESTKIT (cargo build --release -p radport-testkit)" >&2; exit 1; }

make_series() {
    local dir=$1 count=$2 seed=$3
    [[ -f $dir.complete ]] && return 0
    rm -rf "$dir" && mkdir -p "$dir"
    "$TESTKIT" make-series --out "$dir" --count "$count" --rows 512 --columns 512 --seed "$seed" >/dev/null
    touch "$dir.complete"
}
mkdir -p "$DIR/data"
make_series "$DIR/data/single" 1000 1001
for i in 1 2 3 4; do make_series "$DIR/data/four-$i" 250 "200$i"; done

# Reads every file the senders will send, so that they are in the page cache.
warm_inputs() { find "$@" -type f -name '*.dcm' -exec cat {} + >/dev/null; }

# run NAME BINARY FLAGS MODE: prints "images/s cpu_ms_per_instance"
run() {
    local bin=$2 flags=$3 mode=$4 run_dir=$DIR/run
    rm -rf "$run_dir" && mkdir -p "$run_dir"
    # shellcheck disable=SC2086
    RADPORT_ACCESS=open NO_COLOR=1 RADPORT_LOG=warn setsid "$bin" serve --data-dir "$run_dir" \
        --dicom-port "$PORT" --http-port "$HTTP" --bind 127.0.0.1 $flags >"$DIR/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$HTTP/api/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    # The senders' files in the page cache: this machine pages out what was not touched for
    # a few seconds (docs/performance.md, "What skews a run"), and dcmsend would otherwise
    # read them from the receiver's disk while it sends.
    if [[ $mode == 1 ]]; then warm_inputs "$DIR/data/single"; else warm_inputs "$DIR"/data/four-*/; fi
    sync
    sleep 1
    local u0 s0 u1 s1 t0 t1
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    t0=$(date +%s.%N)
    if [[ $mode == 1 ]]; then
        env $SENDER_ENV dcmsend 127.0.0.1 "$PORT" --aetitle kp-ab --call admin --scan-directories \
            --scan-pattern '*.dcm' --recurse "$DIR/data/single" >/dev/null 2>&1
    else
        local senders=() i
        for i in 1 2 3 4; do
            env $SENDER_ENV dcmsend 127.0.0.1 "$PORT" --aetitle "kp-ab$i" --call admin \
                --scan-directories --scan-pattern '*.dcm' --recurse "$DIR/data/four-$i" \
                >/dev/null 2>&1 &
            senders+=($!)
        done
        wait "${senders[@]}"
    fi
    t1=$(date +%s.%N)
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local ticks
    ticks=$(getconf CLK_TCK)
    python3 -c "print(f'{1000/($t1-$t0):.0f} {(($u1-$u0)+($s1-$s0))/$ticks:.3f}')"
}

# A first run after a pause is slow whatever the receiver (2-4x here: 159 and 577 images/s
# against 650 and 1 191 in the rounds after it, 2026-12-05): one run of A with four senders
# first, not counted.
run A "$BIN_A" "$FLAGS_A" 4 >/dev/null

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
    order="A B"
    (( round % 2 == 0 )) && order="B A"
    for mode in 1 4; do
        for who in $order; do
            if [[ $who == A ]]; then out=$(run A "$BIN_A" "$FLAGS_A" "$mode"); else out=$(run B "$BIN_B" "$FLAGS_B" "$mode"); fi
            read -r rate cpu <<<"$out"
            printf 'round %d, %d sender(s), %s: %s images/s, %.2f ms CPU per instance\n' \
                "$round" "$mode" "$who" "$rate" "$cpu"
            RESULTS[$who$mode]+="$rate:$cpu "
        done
    done
done

echo
echo "| senders | receiver | images/s (runs) | median | CPU ms/inst (median) |"
echo "|---|---|---|---:|---:|"
for mode in 1 4; do
    for who in A B; do
        python3 - "$mode" "$who" ${RESULTS[$who$mode]} <<'EOF'
import statistics, sys
mode, who, runs = sys.argv[1], sys.argv[2], [r.split(":") for r in sys.argv[3:]]
rates = [int(r) for r, _ in runs]
cpu = [float(c) for _, c in runs]
print(f"| {mode} | {who} | {', '.join(map(str, rates))} | {statistics.median(rates):.0f} | {statistics.median(cpu):.2f} |")
EOF
    done
done

echo
echo "B against A in the same round (median of the rounds' ratios, min–max; then the rounds run"
echo "in each order weighed alike: the geometric mean of the A-first rounds' and the B-first"
echo "rounds' geometric means — the second run of a pair can be favoured, and an odd number of"
echo "rounds has one order more):"
echo
echo "| senders | images/s B/A | both orders alike | CPU per instance B/A | both orders alike |"
echo "|---|---|---:|---|---:|"
for mode in 1 4; do
    python3 - "$mode" "${RESULTS[A$mode]}" "${RESULTS[B$mode]}" <<'EOF'
import statistics, sys
mode = sys.argv[1]
a = [r.split(":") for r in sys.argv[2].split()]
b = [r.split(":") for r in sys.argv[3].split()]
# Round r (from 1) ran A first when odd, B first when even.
rate = [(r, int(rb) / int(ra)) for r, ((ra, _), (rb, _)) in enumerate(zip(a, b), 1) if int(ra) > 0 and int(rb) > 0]
cpu = [(r, float(cb) / float(ca)) for r, ((_, ca), (_, cb)) in enumerate(zip(a, b), 1) if float(ca) > 0 and float(cb) > 0]
def show(pairs):
    values = [v for _, v in pairs]
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})" if values else "n/a"
def both_orders(pairs):
    firsts = [[v for r, v in pairs if r % 2 == parity] for parity in (1, 0)]
    if not all(firsts):
        return "n/a"
    return f"{statistics.geometric_mean([statistics.geometric_mean(f) for f in firsts]):.3f}"
print(f"| {mode} | {show(rate)} | {both_orders(rate)} | {show(cpu)} | {both_orders(cpu)} |")
EOF
done
