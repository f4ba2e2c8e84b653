#!/usr/bin/env bash
# Ingest benchmark: radport's DICOM receiver vs. DCMTK's storescp, both fed by DCMTK's dcmsend
# at its default settings over loopback.
#
# Usage: bench/ingest.sh            (from anywhere; builds in release, then runs and prints a table)
#
# Environment:
#   BENCH_DIR=/tmp/radport-bench   work dir: cached series, per-run storage, server/dcmsend logs
#   BENCH_COUNT=1000               slices in the single-sender series (512x512, 16-bit, ~0.5 MB each)
#   BENCH_PARALLEL=4               number of simultaneous senders in the parallel scenario
#   BENCH_PARALLEL_COUNT=COUNT/P   slices in each of the parallel series
#   BENCH_WIDE=16                  senders of the scenario "wide" (COUNT/WIDE slices each): more
#                                  associations than cores, which must not be slower than P
#   BENCH_RECEIVERS="radport storescp"   receivers to run (subset allowed; add "baseline" to
#                                  run RADPORT_BASELINE too). Two more run this radport on the
#                                  distributed backends: "postgres" (its catalog on a PostgreSQL
#                                  server the benchmark starts, durable commits as
#                                  deploy/postgresql.conf, a fresh database each run) and "s3"
#                                  (its archive in a three-node Garage bucket, scripts/garage.sh,
#                                  replication factor 3, a fresh prefix each run and a fresh
#                                  bucket each row); their rows' receiver CPU is radport's own,
#                                  the backend's processes' CPU per instance is printed under
#                                  the table
#   RADPORT_BASELINE=PATH          a second radport binary (e.g. an earlier commit's release
#                                  build), the receiver "baseline": to find where a regression
#                                  came from, side by side with the same data and disk
#   BENCH_SCENARIOS="single parallel wide"   scenarios to run (subset allowed; add "cluster" for the
#                                  multi-node line: bench/cluster.sh, three nodes behind HAProxy
#                                  on PostgreSQL and Garage, CPU per instance of each part)
#   BENCH_REPEAT=5                 runs of each scenario and receiver (alternating receivers, the
#                                  order rotated by one each repetition); the table shows the
#                                  median and the spread
#   BENCH_MEMCHECK=1               also run radport with one parallel series alone (COUNT/P slices)
#                                  to show that its peak memory does not grow with the instance count
#   BENCH_NO_BUILD=1               skip `cargo build --release` (use the binaries already in target/)
#   BENCH_RUNS_DIR=BENCH_DIR/runs  where the receivers store what they receive (e.g. /dev/shm/x to
#                                  take the disk, and radport's fsyncs, out of the measurement)
#   BENCH_KEEP=1                   keep the received files of each run (default: each row's deleted
#                                  after it, then a 65 s pause). Runs never delete files while
#                                  others are measured: on ext4
#                                  without a journal, creating a file skips every inode deleted in
#                                  the last minute one by one, so a receiver started right after
#                                  1000 deletions pays for them (measured: several times slower
#                                  file creation, whichever receiver it is)
#   STORESCP_FLAGS="+xa"           extra flags for /usr/bin/storescp (output dir, --fork and port are added)
#   RADPORT_FLAGS=""               extra flags for `radport serve`
#   BASELINE_FLAGS=RADPORT_FLAGS   the baseline's flags instead (e.g. the same binary as
#                                  RADPORT_BASELINE with "--ingest-durability direct")
#   BENCH_TIMEOUT=600              seconds a single scenario may take before it counts as failed
#   BENCH_NAGLE="on off"           sender modes, each scenario run in each: "on" is dcmsend's
#                                  default, "off" runs it with TCP_NODELAY=1 (DCMTK's switch for
#                                  Nagle's algorithm). With Nagle on in the sender, a receiver that
#                                  delays its ACKs (storescp) stalls up to 40 ms now and then,
#                                  whatever its own TCP_NODELAY; "off" shows the receivers without
#                                  those stalls. (BENCH_SENDER_NODELAY=1 is BENCH_NAGLE=off.)
#
# Each row also shows the CPU the receiver's process group spent per instance (utime + stime of
# its processes and their reaped children, from /proc), the whole machine's busy CPU per instance
# (senders included), and for radport the p50/p99 of its C-STORE latency (from its /metrics
# histogram, interpolated within the doubling buckets); under the table, for radport into packs,
# where its answers waited (its /metrics pack-log totals: instances per sync, the write per
# group, the sync, the wait for a writer per instance). The machine's state (free memory, dirty
# and writeback pages, load) is printed with the table; runs start after `sync` and a second
# of the fresh receiver idle (radport writes its packs' space ahead then). Before the runs two
# references are measured: dd with conv=fdatasync, and the durable-ingest floor
# (bench/floor.sh: 0.5 MB messages over loopback answered once on disk, and once in the page
# cache, with 1 and BENCH_PARALLEL senders) — what any receiver could reach on this machine.
#   BENCH_UPDATE_DOCS=1            after a successful run, put its table (with the date and the
#                                  machine's state) into docs/performance.md (bench/update-docs.sh)
#
# Exit status: non-zero if the build fails, a receiver does not start, any dcmsend fails, or
# a receiver did not store every instance that was sent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BENCH_UPDATE_DOCS=1: the same run through bench/update-docs.sh, which then puts its output
# into the block bench:ingest of docs/performance.md.
[[ "${BENCH_UPDATE_DOCS:-0}" != 1 ]] || exec bash "$ROOT/bench/update-docs.sh" run ingest "${BASH_SOURCE[0]}" "$@"
BENCH_DIR="${BENCH_DIR:-/tmp/radport-bench}"
BENCH_COUNT="${BENCH_COUNT:-1000}"
BENCH_PARALLEL="${BENCH_PARALLEL:-4}"
BENCH_PARALLEL_COUNT="${BENCH_PARALLEL_COUNT:-$(( BENCH_COUNT / BENCH_PARALLEL ))}"
BENCH_RECEIVERS="${BENCH_RECEIVERS:-radport storescp}"
BENCH_SCENARIOS="${BENCH_SCENARIOS:-single parallel wide}"
BENCH_WIDE="${BENCH_WIDE:-16}"
RADPORT_BASELINE="${RADPORT_BASELINE:-}"
BENCH_MEMCHECK="${BENCH_MEMCHECK:-1}"
BENCH_REPEAT="${BENCH_REPEAT:-5}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-600}"
BENCH_NAGLE="${BENCH_NAGLE:-on off}"
[[ "${BENCH_SENDER_NODELAY:-0}" != 1 ]] || BENCH_NAGLE=off
# DCMTK reads TCP_NODELAY from the environment; unset means its default (Nagle on). Set per
# mode by main.
SENDER_NODELAY=""
STORESCP_FLAGS="${STORESCP_FLAGS:-+xa}"
RADPORT_FLAGS="${RADPORT_FLAGS:-}"
BASELINE_FLAGS="${BASELINE_FLAGS-$RADPORT_FLAGS}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RADPORT="$TARGET_DIR/release/radport"
TESTKIT="$TARGET_DIR/release/radport-testkit"
FLOOR="$TARGET_DIR/release/radport-bench-floor"
# Full paths: pip's pynetdicom installs Python apps with the same names earlier on the PATH.
DCMSEND=/usr/bin/dcmsend
STORESCP=/usr/bin/storescp
ECHOSCU=/usr/bin/echoscu
CALLING_AE=kp-bench
CALLED_AE=kp-admin
PROJECT=admin

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
# The backends of the receivers postgres and s3 (start_backends), under BENCH_DIR.
PG_DIR="$BENCH_DIR/postgres"
PG_PORT=""
GARAGE_DIR="$BENCH_DIR/garage"
export GARAGE_BASE_PORT="${GARAGE_BASE_PORT:-24900}"
S3_URL=""
RUN_SEQ=0

LOGS="$BENCH_DIR/logs"
RUNS="${BENCH_RUNS_DIR:-$BENCH_DIR/runs}"
DATA="$BENCH_DIR/data"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# --- background processes and cleanup -------------------------------------------------------
SERVER_PID=""      # the receiver currently running (its own process group, see start_*)
SERVER_LOG=""
declare -a SENDER_PIDS=()

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        # The server leads its own process group: this also reaches storescp's forked children.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            log "WARNING: server PID $SERVER_PID still running 10 s after SIGTERM: killing it"
            kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
        # storescp children still busy with an association, if any (members of our group only)
        if pgrep -g "$SERVER_PID" >/dev/null 2>&1; then kill -KILL -- "-$SERVER_PID" 2>/dev/null || true; fi
        SERVER_PID=""
    fi
}

cleanup() {
    local rc=$?
    local p
    for p in "${SENDER_PIDS[@]:-}"; do
        [[ -n "$p" ]] && kill -TERM "$p" 2>/dev/null || true
    done
    if [[ $rc -ne 0 && -n "$SERVER_LOG" && -f "$SERVER_LOG" ]]; then
        log "last lines of the server log $SERVER_LOG:"
        tail -n 40 "$SERVER_LOG" >&2 || true
    fi
    stop_server
    stop_backends
    # Deleted only now, after every measurement (see BENCH_KEEP).
    if [[ "${BENCH_KEEP:-0}" != 1 ]]; then
        rm -rf "${RUNS_TO_DELETE[@]}"
    fi
    exit "$rc"
}
declare -a RUNS_TO_DELETE=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ---------------------------------------------------------------------------------
need() { [[ -x "$1" ]] || die "$1 not found (${2:-})"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

now() { date +%s.%N; }

# bytes and number of *.dcm files under the given dirs
count_files() { find "$@" -type f -name '*.dcm' | wc -l; }
# Reads every file the senders will send, so that they are in the page cache.
warm_inputs() { find "$@" -type f -name '*.dcm' -exec cat {} + > /dev/null; }
count_bytes() { find "$@" -type f -name '*.dcm' -printf '%s\n' | awk '{s+=$1} END {printf "%d\n", s}'; }

CLK_TCK=$(getconf CLK_TCK)

# CPU ticks of a process group: utime + stime + cutime + cstime of each member (zombies
# included: a child that exited but is not reaped yet still shows its own).
group_cpu_ticks() {
    local pgid=$1
    # A process may end between the glob and its read: that is not an error here.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v g="$pgid" '{
        sub(/^.*\) /, "")            # past the command name, which may hold spaces
        if ($3 == g) t += $12 + $13 + $14 + $15
    } END {printf "%d\n", t}'
}

# CPU ticks of every process whose command is $1 (a backend's: postgres, garage), with their
# reaped children's
named_cpu_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v c="($1)" '$2 == c {
        sub(/^.*\) /, "")
        t += $12 + $13 + $14 + $15
    } END {printf "%d\n", t}'
}

# busy CPU ticks of the whole machine (all but idle and iowait)
machine_busy_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# free memory, dirty and writeback pages, load: the machine's state, one line
machine_state() {
    awk '/^MemAvailable:/ {a = $2} /^Dirty:/ {d = $2} /^Writeback:/ {w = $2}
        END {printf "available %.1f GB, dirty %.0f MB, writeback %.0f MB", a / 1048576, d / 1024, w / 1024}' /proc/meminfo
    printf ', load %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# p50 and p99 (ms) of radport's successful C-STORE durations, from its /metrics histogram:
# linear within the bucket the rank falls in.
radport_latency() {
    curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | python3 -c '
import re, sys
buckets = []
for line in sys.stdin:
    m = re.match(r"radport_c_store_duration_seconds_bucket\{(.*)\} (\S+)", line)
    if m and "outcome=\"success\"" in m.group(1):
        le = re.search(r"le=\"([^\"]+)\"", m.group(1)).group(1)
        buckets.append((float("inf") if le == "+Inf" else float(le), float(m.group(2))))
buckets.sort()
total = buckets[-1][1] if buckets else 0
def at(q):
    if total == 0:
        return float("nan")
    rank, low, below = q * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return low * 1000
            return (low + (le - low) * (rank - below) / max(n - below, 1)) * 1000
        low, below = le, n
    return float("nan")
print("%.1f %.1f" % (at(0.5), at(0.99)))'
}

# Where radport's answers waited, from its /metrics pack-log totals (the run's own: each run
# has a fresh receiver): instances per sync, and in ms the write and the sync per group and
# the wait for a writer per instance. Nothing when the receiver keeps no packs.
radport_pack_figures() {
    curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | python3 -c '
import re, sys
v = {}
for line in sys.stdin:
    m = re.match(r"radport_pack_(records|syncs|groups|queue_seconds|write_seconds|sync_seconds)_total (\S+)", line)
    if m:
        v[m.group(1)] = float(m.group(2))
if v.get("records", 0) > 0 and v.get("syncs", 0) > 0 and v.get("groups", 0) > 0:
    print("%.2f %.3f %.3f %.3f" % (v["records"] / v["syncs"], v["write_seconds"] / v["groups"] * 1000,
        v["sync_seconds"] / v["syncs"] * 1000, v["queue_seconds"] / v["records"] * 1000))'
}

# median of numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "?"; else printf "%.2f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

# peak resident memory (VmHWM) of a process, in MiB
peak_rss_mb() {
    awk '/^VmHWM:/ {printf "%.0f\n", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"
}

# waits until a command succeeds, at most $1 seconds; fails if the server died meanwhile
wait_for() {
    local timeout=$1; shift
    local deadline=$(( $(date +%s) + timeout ))
    until "$@" >/dev/null 2>&1; do
        if [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
            die "the server exited while starting (log: $SERVER_LOG)"
        fi
        (( $(date +%s) < deadline )) || die "timed out after ${timeout}s waiting for: $*"
        sleep 0.1
    done
}

# --- build -----------------------------------------------------------------------------------
build() {
    if [[ "${BENCH_NO_BUILD:-0}" == 1 ]]; then
        log "skipping the build (BENCH_NO_BUILD=1)"
    else
        log "building radport and radport-testkit in release (this can take several minutes)"
        mkdir -p "$LOGS"
        if ! (cd "$ROOT" && cargo build --release -p radport -p radport-testkit \
            -p radport-bench --bin radport-bench-floor) >"$LOGS/build.log" 2>&1; then
            tail -n 60 "$LOGS/build.log" >&2
            die "cargo build --release failed (full log: $LOGS/build.log)"
        fi
    fi
    need "$RADPORT" "cargo build --release -p radport"
    need "$TESTKIT" "cargo build --release -p radport-testkit"
    need "$FLOOR" "cargo build --release -p radport-bench --bin radport-bench-floor"
}

# --- test data (cached) ----------------------------------------------------------------------
# make_series DIR COUNT SEED: writes the series unless DIR already holds exactly COUNT files
# made by this script (marker file with the same parameters).
make_series() {
    local dir=$1 count=$2 seed=$3
    local stamp="count=$count rows=512 columns=512 seed=$seed"
    if [[ -f "$dir.complete" && "$(cat "$dir.complete")" == "$stamp" ]] \
        && [[ "$(count_files "$dir")" -eq "$count" ]]; then
        return 0
    fi
    rm -rf "$dir" "$dir.complete"
    mkdir -p "$dir"
    log "generating $count slices 512x512 (seed $seed) in $dir"
    "$TESTKIT" make-series --out "$dir" --count "$count" --rows 512 --columns 512 --seed "$seed" \
        >"$LOGS/make-series-$seed.log" 2>&1 || { cat "$LOGS/make-series-$seed.log" >&2; die "make-series failed"; }
    [[ "$(count_files "$dir")" -eq "$count" ]] || die "make-series wrote $(count_files "$dir") files, expected $count"
    echo "$stamp" >"$dir.complete"
}

SINGLE_DIR=""
declare -a PARALLEL_DIRS=() WIDE_DIRS=()
WIDE_COUNT=0
prepare_data() {
    mkdir -p "$DATA"
    SINGLE_DIR="$DATA/single-$BENCH_COUNT"
    make_series "$SINGLE_DIR" "$BENCH_COUNT" 1001
    local i
    for i in $(seq 1 "$BENCH_PARALLEL"); do
        PARALLEL_DIRS+=("$DATA/parallel-$BENCH_PARALLEL_COUNT-$i")
        make_series "$DATA/parallel-$BENCH_PARALLEL_COUNT-$i" "$BENCH_PARALLEL_COUNT" "200$i"
    done
    if [[ " $BENCH_SCENARIOS " == *" wide "* ]]; then
        WIDE_COUNT=$(( BENCH_COUNT / BENCH_WIDE ))
        (( WIDE_COUNT > 0 )) || die "BENCH_COUNT / BENCH_WIDE must be positive"
        for i in $(seq 1 "$BENCH_WIDE"); do
            WIDE_DIRS+=("$DATA/wide-$WIDE_COUNT-$i")
            make_series "$DATA/wide-$WIDE_COUNT-$i" "$WIDE_COUNT" "$(( 3000 + i ))"
        done
    fi
    # Warm the page cache so that every receiver reads the same (cached) input.
    local d
    for d in "$SINGLE_DIR" "${PARALLEL_DIRS[@]}" "${WIDE_DIRS[@]}"; do
        find "$d" -type f -name '*.dcm' -exec cat {} + >/dev/null
    done
}

# --- receivers -------------------------------------------------------------------------------
DICOM_PORT=""
HTTP_PORT=""
STORE_DIR=""

start_radport() {
    local name=$1
    STORE_DIR="$RUNS/$name"
    mkdir -p "$STORE_DIR"
    DICOM_PORT=$(free_port)
    HTTP_PORT=$(free_port)
    while [[ "$HTTP_PORT" == "$DICOM_PORT" ]]; do HTTP_PORT=$(free_port); done
    SERVER_LOG="$LOGS/$name.server.log"
    # setsid: the server leads its own process group (a background job of a script is never a
    # group leader, so setsid execs in place and $! is radport's own PID).
    # shellcheck disable=SC2086
    # Access open (the benchmark reads the API without signing in): by the environment, which
    # older builds compared side by side ignore.
    RADPORT_ACCESS=open NO_COLOR=1 setsid "$RADPORT" serve --data-dir "$STORE_DIR" --dicom-port "$DICOM_PORT" \
        --http-port "$HTTP_PORT" --bind 127.0.0.1 $RADPORT_FLAGS >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    wait_for 30 curl -fsS "http://127.0.0.1:$HTTP_PORT/api/health"
    [[ "$(cat "/proc/$SERVER_PID/comm" 2>/dev/null)" == radport* ]] \
        || die "PID $SERVER_PID is not the radport server (VmHWM would be wrong)"
}

# the same as radport, with the binary RADPORT_BASELINE
start_baseline() {
    local own=$RADPORT own_flags=$RADPORT_FLAGS
    RADPORT=$RADPORT_BASELINE
    RADPORT_FLAGS=$BASELINE_FLAGS
    start_radport "$1"
    RADPORT=$own
    RADPORT_FLAGS=$own_flags
}

start_storescp() {
    local name=$1
    STORE_DIR="$RUNS/$name"
    mkdir -p "$STORE_DIR"
    DICOM_PORT=$(free_port)
    HTTP_PORT=""
    SERVER_LOG="$LOGS/$name.server.log"
    # TCP_NODELAY=1: without it DCMTK's receiver stalls ~40 ms per image (Nagle + delayed ACK).
    # --fork: one child per association, so that parallel senders are served at the same time.
    # shellcheck disable=SC2086
    TCP_NODELAY=1 setsid "$STORESCP" --fork $STORESCP_FLAGS -od "$STORE_DIR" "$DICOM_PORT" \
        >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    wait_for 30 "$ECHOSCU" -to 2 127.0.0.1 "$DICOM_PORT"
}

# --- the distributed backends (receivers postgres and s3) ----------------------------------------
start_postgres_server() {
    PG_PORT=$(free_port)
    bash "$ROOT/scripts/postgres.sh" start "$PG_DIR" "$PG_PORT" || die "PostgreSQL did not start (scripts/install-deps.sh)"
    log "PostgreSQL on port $PG_PORT (fsync on) for the receiver postgres"
}

# A fresh Garage cluster (three nodes, one bucket); its AWS_* credentials exported for radport.
start_garage() {
    rm -rf "$GARAGE_DIR"
    bash "$ROOT/scripts/garage.sh" start "$GARAGE_DIR" >/dev/null
    local key value
    while IFS='=' read -r key value; do
        case $key in
            AWS_*) export "$key=$value" ;;
            # Not exported: radport reads RADPORT_ARCHIVE_URL, and the other receivers archive locally.
            RADPORT_ARCHIVE_URL) S3_URL=$value ;;
        esac
    done <"$GARAGE_DIR/env"
    [[ -n "$S3_URL" ]] || die "scripts/garage.sh wrote no RADPORT_ARCHIVE_URL"
    log "Garage, three nodes (ports from $GARAGE_BASE_PORT), for the receiver s3"
}

stop_garage() {
    if [[ -d "$GARAGE_DIR" ]]; then
        bash "$ROOT/scripts/garage.sh" stop "$GARAGE_DIR" >/dev/null 2>&1 || true
        rm -rf "$GARAGE_DIR"
    fi
}

start_backends() {
    [[ " $BENCH_RECEIVERS " != *" postgres "* ]] || start_postgres_server
    [[ " $BENCH_RECEIVERS " != *" s3 "* ]] || start_garage
}

stop_backends() {
    if [[ -n "$PG_PORT" ]]; then
        bash "$ROOT/scripts/postgres.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
        PG_PORT=""
        rm -rf "$PG_DIR"
    fi
    stop_garage
}

# start_radport NAME with FLAGS added to RADPORT_FLAGS for this receiver
start_radport_adding() {
    local own_flags=$RADPORT_FLAGS
    RADPORT_FLAGS="$RADPORT_FLAGS $2"
    start_radport "$1"
    RADPORT_FLAGS=$own_flags
}

# radport with its catalog in a fresh database on the benchmark's PostgreSQL server
start_postgres() {
    RUN_SEQ=$((RUN_SEQ + 1))
    local db="run_$RUN_SEQ"
    "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U radport -d postgres -c "create database $db" >/dev/null \
        || die "cannot create the database $db"
    start_radport_adding "$1" "--catalog-url postgres://radport@127.0.0.1:$PG_PORT/$db"
}

# radport with its archive under a fresh prefix of the benchmark's Garage bucket
start_s3() { start_radport_adding "$1" "--archive-url $S3_URL/$1"; }

# whether a receiver is a radport (its API, latency and pack figures can be read)
is_radport() { [[ $1 == radport || $1 == baseline || $1 == postgres || $1 == s3 ]]; }

# the processes' command of a receiver's backend, if it has one
backend_of() {
    case $1 in
        postgres) echo postgres ;;
        s3) echo garage ;;
    esac
}

# sum of instance_count over the project's series (radport), via the HTTP API
radport_instances() {
    curl -fsS "http://127.0.0.1:$HTTP_PORT/api/projects/$PROJECT/series?limit=100" | python3 -c '
import json, sys
page = json.load(sys.stdin)
items = page["items"]
if page["total"] > len(items):
    sys.exit("more series than one page: %d > %d" % (page["total"], len(items)))
print(sum(int(s["instance_count"]) for s in items), len(items))'
}

# --- scenarios -------------------------------------------------------------------------------
# Per "scenario|receiver": every run's seconds, the largest peak RSS, images and bytes per run,
# failed runs. Summarised by table_row.
declare -A SECS=() PEAK=() IMAGES=() BYTES=() FAILED=() RATE=() CPU=() MCPU=() P50=() P99=() BCPU=()
# the pack log's figures per run (radport_pack_figures): instances per sync, write and sync ms
# per group, queue ms per instance
declare -A PER_SYNC=() WRITE_MS=() SYNC_MS=() QUEUE_MS=()
FAILURES=0

# run_scenario SCENARIO RECEIVER REPETITION DIR...: one dcmsend per DIR, all at the same time,
# against a freshly started receiver with an empty storage dir.
run_scenario() {
    local scenario=$1 receiver=$2 rep=$3; shift 3
    local dirs=("$@")
    local name="$scenario-$receiver-$rep"
    local key="$scenario|$receiver"
    local expected bytes
    expected=$(count_files "${dirs[@]}")
    bytes=$(count_bytes "${dirs[@]}")

    # The senders' files in the page cache: a run after others (or after a build) found them
    # partly evicted, and dcmsend read them from the disk while it sent (7 874 block reads in
    # one run) — beside a receiver's synced writes, which only a receiver that syncs pays for.
    # In a deployment the senders' disks are not the receiver's.
    warm_inputs "${dirs[@]}"
    # Flush the dirty pages of earlier steps (test data, previous runs): a receiver that fsyncs
    # would otherwise wait for them (ext4 commits them with its journal) and look slower.
    sync
    log "$scenario / $receiver #$rep: starting a fresh receiver"
    "start_$receiver" "$name"
    # A second idle after it answers, as a receiver has between studies: radport writes its
    # pack's space ahead then (--pack-write-ahead, about half a second for 1 GiB here).
    sleep 1

    log "$scenario / $receiver #$rep: sending $expected files with ${#dirs[@]} dcmsend; $(machine_state)"
    local t0 t1 i rc failed=0 cpu0 cpu1 busy0 busy1
    SENDER_PIDS=()
    local backend backend0=0 backend1=0
    backend=$(backend_of "$receiver")
    [[ -z "$backend" ]] || backend0=$(named_cpu_ticks "$backend")
    cpu0=$(group_cpu_ticks "$SERVER_PID")
    busy0=$(machine_busy_ticks)
    t0=$(now)
    for i in "${!dirs[@]}"; do
        env ${SENDER_NODELAY:+TCP_NODELAY=$SENDER_NODELAY} timeout "$BENCH_TIMEOUT" "$DCMSEND" 127.0.0.1 "$DICOM_PORT" --aetitle "$CALLING_AE" \
            --call "$CALLED_AE" --scan-directories --scan-pattern '*.dcm' --recurse "${dirs[$i]}" \
            >"$LOGS/$name.dcmsend-$((i + 1)).log" 2>&1 &
        SENDER_PIDS+=($!)
    done
    for i in "${!SENDER_PIDS[@]}"; do
        rc=0
        wait "${SENDER_PIDS[$i]}" || rc=$?
        if [[ $rc -ne 0 ]]; then
            failed=1
            log "$scenario / $receiver #$rep: dcmsend #$((i + 1)) exited with $rc; its log:"
            tail -n 30 "$LOGS/$name.dcmsend-$((i + 1)).log" >&2 || true
        fi
    done
    t1=$(now)
    busy1=$(machine_busy_ticks)
    cpu1=$(group_cpu_ticks "$SERVER_PID")
    [[ -z "$backend" ]] || backend1=$(named_cpu_ticks "$backend")
    SENDER_PIDS=()
    local ms_cpu ms_busy
    ms_cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$expected" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) * 1000 / hz / n}')
    ms_busy=$(awk -v a="$busy0" -v b="$busy1" -v n="$expected" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) * 1000 / hz / n}')
    CPU[$key]="${CPU[$key]:-} $ms_cpu"
    MCPU[$key]="${MCPU[$key]:-} $ms_busy"
    local ms_backend=""
    if [[ -n "$backend" ]]; then
        ms_backend=$(awk -v a="$backend0" -v b="$backend1" -v n="$expected" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) * 1000 / hz / n}')
        BCPU[$key]="${BCPU[$key]:-} $ms_backend"
    fi

    # What arrived. dcmsend returns only after the last C-STORE response, so everything
    # acknowledged must already be visible; a short grace period only guards against a
    # receiver that acknowledges before cataloguing (reported below if it was needed).
    local received=0 series=0 peak="n/a" waited=0
    if is_radport "$receiver"; then
        local deadline=$(( $(date +%s) + 15 ))
        if (( failed )); then deadline=0; fi   # a sender failed: no point in waiting
        while :; do
            read -r received series < <(radport_instances) || { received=-1; series=0; }
            [[ $received -eq $expected || $(date +%s) -ge $deadline ]] && break
            waited=1
            sleep 0.5
        done
        if (( waited )); then
            log "$scenario / $receiver #$rep: WARNING the API needed extra time after dcmsend finished to show $received/$expected instances"
        fi
        local latency
        latency=$(radport_latency || echo "nan nan")
        P50[$key]="${P50[$key]:-} ${latency% *}"
        P99[$key]="${P99[$key]:-} ${latency#* }"
        local per_sync write_ms sync_ms queue_ms
        if read -r per_sync write_ms sync_ms queue_ms < <(radport_pack_figures 2>/dev/null); then
            PER_SYNC[$key]="${PER_SYNC[$key]:-} $per_sync"
            WRITE_MS[$key]="${WRITE_MS[$key]:-} $write_ms"
            SYNC_MS[$key]="${SYNC_MS[$key]:-} $sync_ms"
            QUEUE_MS[$key]="${QUEUE_MS[$key]:-} $queue_ms"
        fi
        peak=$(peak_rss_mb "$SERVER_PID")
        if [[ -z "${PEAK[$key]:-}" || "${PEAK[$key]}" == "?" || "$peak" == "?" ]] || (( peak > PEAK[$key] )); then
            PEAK[$key]=$peak
        fi
        local on_disk
        on_disk=$(find "$STORE_DIR" -type f ! -name 'catalog.db*' | wc -l)
        log "$scenario / $receiver #$rep: API shows $received instances in $series series; $on_disk files in the data dir; peak RSS ${peak} MiB"
        local problems
        problems=$(sed 's/\x1b\[[0-9;]*m//g' "$SERVER_LOG" | grep -E ' (ERROR|WARN) ' || true)
        if [[ -n "$problems" ]]; then
            log "$scenario / $receiver #$rep: the server log has $(wc -l <<<"$problems") warning/error lines, first ones:"
            head -n 20 <<<"$problems" >&2
        fi
    else
        received=$(find "$STORE_DIR" -type f | wc -l)
        log "$scenario / $receiver #$rep: $received files written"
    fi
    local t2
    t2=$(now)
    stop_server
    log "$scenario / $receiver #$rep: receiver stopped in $(awk -v a="$t2" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') s"

    if [[ $received -ne $expected ]]; then
        log "$scenario / $receiver #$rep: MISSING INSTANCES: sent $expected, receiver has $received"
        log "server log $SERVER_LOG (last lines):"
        tail -n 40 "$SERVER_LOG" >&2 || true
        failed=1
    fi
    SERVER_LOG=""   # already shown if something went wrong

    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    SECS[$key]="${SECS[$key]:-} $secs"
    IMAGES[$key]=$expected
    BYTES[$key]=$bytes
    : "${PEAK[$key]:=n/a}"
    if (( failed )); then
        FAILURES=$((FAILURES + 1))
        FAILED[$key]="${FAILED[$key]:-} #$rep:$received/$expected"
    fi
    log "$scenario / $receiver #$rep: $expected images in $secs s ($(awk -v n="$expected" -v s="$secs" 'BEGIN {printf "%.0f", (s > 0 ? n / s : 0)}') images/s); CPU per instance: receiver $ms_cpu ms, machine $ms_busy ms${backend:+, $backend $ms_backend ms}"
}

# table_row SCENARIO RECEIVER: one Markdown row with the median of the runs
table_row() {
    local key="$1|$2"
    [[ -n "${SECS[$key]:-}" ]] || return 0
    local secs n bytes rate mb mbps status=""
    # shellcheck disable=SC2086
    secs=$(printf '%s\n' ${SECS[$key]} | sort -g | awk '{v[NR] = $1} END {printf "%.2f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}')
    local spread
    # shellcheck disable=SC2086
    spread=$(printf '%s\n' ${SECS[$key]} | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f–%.2f", lo, hi}')
    n=${IMAGES[$key]}
    bytes=${BYTES[$key]}
    mb=$(awk -v b="$bytes" 'BEGIN {printf "%.0f", b / 1048576}')
    rate=$(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.0f", (s > 0 ? n / s : 0)}')
    mbps=$(awk -v b="$bytes" -v s="$secs" 'BEGIN {printf "%.1f", (s > 0 ? b / 1048576 / s : 0)}')
    if [[ -n "${FAILED[$key]:-}" ]]; then
        # failed runs (listed as #run:stored/sent) make the timing meaningless
        status=" **FAILED**${FAILED[$key]}"
        secs="—"; rate="—"; mbps="—"; spread="—"
    else
        RATE[$key]=$rate
    fi
    local cpu mcpu p50="n/a" p99="n/a"
    # shellcheck disable=SC2086
    cpu=$(median ${CPU[$key]:-})
    # shellcheck disable=SC2086
    mcpu=$(median ${MCPU[$key]:-})
    if [[ -n "${P50[$key]:-}" ]]; then
        # shellcheck disable=SC2086
        p50=$(median ${P50[$key]})
        # shellcheck disable=SC2086
        p99=$(median ${P99[$key]})
    fi
    echo "| $1 | $2$status | $n | $mb | $secs | $spread | $rate | $mbps | $cpu | $mcpu | $p50 | $p99 | ${PEAK[$key]} |"
}

# --- main ------------------------------------------------------------------------------------
main() {
    need "$DCMSEND" "apt-get install dcmtk"
    need "$STORESCP" "apt-get install dcmtk"
    need "$ECHOSCU" "apt-get install dcmtk"
    command -v python3 >/dev/null || die "python3 is required"
    command -v curl >/dev/null || die "curl is required"
    (( BENCH_PARALLEL_COUNT > 0 )) || die "BENCH_PARALLEL_COUNT must be positive"
    mkdir -p "$LOGS"
    rm -f "$LOGS"/*.server.log "$LOGS"/*.dcmsend-*.log
    # Files of an earlier invocation are moved aside and deleted at the end (see BENCH_KEEP).
    if [[ -e "$RUNS" ]]; then
        local old="$RUNS.old.$$"
        mv "$RUNS" "$old"
        RUNS_TO_DELETE+=("$old")
    fi
    mkdir -p "$RUNS"
    RUNS_TO_DELETE+=("$RUNS")

    build
    prepare_data
    # A row's runs (one scenario in one sender mode) keep their files until the row ends: check
    # that the largest row fits.
    local receivers_n needed available
    receivers_n=$(wc -w <<<"$BENCH_RECEIVERS")
    needed=$(( $(count_bytes "$SINGLE_DIR") * BENCH_REPEAT * receivers_n + $(count_bytes "${PARALLEL_DIRS[0]}") ))
    available=$(df --output=avail -B1 "$RUNS" | tail -n 1)
    (( available > needed + needed / 10 )) \
        || die "$RUNS has $((available >> 20)) MiB free; the runs need about $((needed >> 20)) MiB (lower BENCH_COUNT or BENCH_REPEAT, or set BENCH_RUNS_DIR)"

    # What the disk takes when every byte has to be on it: the ceiling for a receiver that
    # answers only once an instance is durable (storescp never syncs, so it is not bound by it).
    local disk_mbps
    disk_mbps=$(LC_ALL=C dd if=/dev/zero of="$RUNS/disk-reference" bs=1M count=512 conv=fdatasync 2>&1 \
        | awk '/copied/ {for (i = 1; i <= NF; i++) if ($i == "s,") print $(i-1)}' \
        | awk -v b=$((512 * 1048576)) '{printf "%.0f", b / 1048576 / $1}')
    rm -f "$RUNS/disk-reference"
    log "disk reference: 512 MiB written with dd conv=fdatasync at ${disk_mbps:-?} MB/s"
    # The same ceiling with the senders' message size and pace: a receiver with nothing to
    # do but take 0.5 MB messages over loopback and answer each once it is on disk
    # (bench/floor.sh, `direct`), and one that answers once it is in the page cache.
    local floor_lines=() senders mode
    for senders in 1 "$BENCH_PARALLEL"; do
        for mode in direct cache; do
            sync
            floor_lines+=("$("$FLOOR" "$mode" "$senders" $(( BENCH_COUNT / senders )) "$RUNS")")
        done
    done
    log "floor: ${floor_lines[*]}"

    local r mode
    for r in $BENCH_RECEIVERS; do
        [[ $r == radport || $r == storescp || $r == baseline || $r == postgres || $r == s3 ]] \
            || die "unknown receiver $r (use radport, storescp, baseline, postgres and/or s3)"
        if [[ $r == baseline ]]; then
            [[ -x "$RADPORT_BASELINE" ]] || die "receiver baseline needs RADPORT_BASELINE, an executable radport"
        fi
    done
    for mode in $BENCH_NAGLE; do
        [[ $mode == on || $mode == off ]] || die "unknown BENCH_NAGLE mode $mode (use on and/or off)"
    done
    start_backends
    local scenario
    for scenario in $BENCH_SCENARIOS; do
        [[ $scenario == single || $scenario == parallel || $scenario == wide || $scenario == cluster ]] \
            || die "unknown scenario $scenario (use single, parallel, wide and/or cluster)"
    done
    # Repetition n starts with the n-th receiver: none is always first (or always after the same one).
    local rep order
    order() { local -a list=($BENCH_RECEIVERS); local n=${#list[@]} k; for ((k = 0; k < n; k++)); do echo "${list[$(( (k + $1 - 1) % n ))]}"; done; }
    # Rows: "name|dirs variable" per scenario and sender mode (names end in .nagle / .nodelay).
    local -a rows=()
    for mode in $BENCH_NAGLE; do
        local suffix=nagle
        [[ $mode == on ]] || suffix=nodelay
        [[ " $BENCH_SCENARIOS " != *" single "* ]] || rows+=("single-$BENCH_COUNT.$suffix|SINGLE_DIR|$mode")
        [[ " $BENCH_SCENARIOS " != *" parallel "* ]] || rows+=("parallel-${BENCH_PARALLEL}x$BENCH_PARALLEL_COUNT.$suffix|PARALLEL_DIRS|$mode")
        [[ " $BENCH_SCENARIOS " != *" wide "* ]] || rows+=("wide-${BENCH_WIDE}x$WIDE_COUNT.$suffix|WIDE_DIRS|$mode")
    done
    local row name dirs_var
    for row in "${rows[@]}"; do
        IFS='|' read -r name dirs_var mode <<<"$row"
        SENDER_NODELAY=""
        [[ $mode == on ]] || SENDER_NODELAY=1
        local -n dirs_ref=$dirs_var
        for rep in $(seq 1 "$BENCH_REPEAT"); do
            for r in $(order "$rep"); do run_scenario "$name" "$r" "$rep" "${dirs_ref[@]}"; done
        done
        unset -n dirs_ref
        if [[ "${BENCH_KEEP:-0}" != 1 && "$row" != "${rows[-1]}" ]]; then
            # The row's files go, then a pause: on ext4 without a journal a file created within
            # a minute of many deletions pays for each of them (see BENCH_KEEP).
            rm -rf "$RUNS/$name"-*
            # and the objects the receiver s3 stored: a fresh Garage bucket for the next row
            if [[ -n "$S3_URL" ]]; then stop_garage; start_garage; fi
            sync
            log "waiting 65 s after deleting the runs of $name"
            sleep 65
        fi
    done
    SENDER_NODELAY=""
    local memcheck=""
    if [[ "$BENCH_MEMCHECK" == 1 && " $BENCH_RECEIVERS " == *" radport "* ]]; then
        memcheck="single-$BENCH_PARALLEL_COUNT"
        run_scenario "$memcheck" radport 1 "${PARALLEL_DIRS[0]}"
    fi

    local s a b
    echo
    echo "Ingest benchmark: dcmsend (DCMTK $("$DCMSEND" --version | awk 'NR==1 {print $3}'); .nagle = its default settings, .nodelay = TCP_NODELAY=1) -> receiver on 127.0.0.1;" \
        "512x512 16-bit CT slices; $(nproc) CPUs; median of $BENCH_REPEAT run(s), each against a fresh receiver, receivers alternating;" \
        "MB = 2^20 bytes; CPU = ms per instance of the receiver's processes / of the whole machine (senders included);" \
        "p50/p99 = radport's C-STORE latency in ms; peak RSS = largest VmHWM of the radport process"
    echo "machine at the end: $(machine_state)"
    echo
    echo "| scenario | receiver | images | MB | seconds (median) | min–max s | images/s | MB/s | receiver CPU | machine CPU | p50 ms | p99 ms | peak RSS MB |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local -a names=()
    for row in "${rows[@]}"; do names+=("${row%%|*}"); done
    for s in "${names[@]}" $memcheck; do
        for r in $BENCH_RECEIVERS; do table_row "$s" "$r"; done
    done
    echo
    for s in "${names[@]}" $memcheck; do
        for r in $BENCH_RECEIVERS; do
            if [[ -n "${SECS["$s|$r"]:-}" ]]; then echo "seconds per run, $s / $r:${SECS["$s|$r"]}"; fi
        done
    done
    local k
    for s in "${names[@]}"; do
        for r in $BENCH_RECEIVERS; do
            k="$s|$r"
            if [[ -n "${PER_SYNC[$k]:-}" ]]; then
                # shellcheck disable=SC2086
                echo "pack log, $s / $r (medians of the runs): $(median ${PER_SYNC[$k]}) instances per sync;" \
                    "per group a write of $(median ${WRITE_MS[$k]}) ms, per sync $(median ${SYNC_MS[$k]}) ms;" \
                    "$(median ${QUEUE_MS[$k]}) ms waiting for a writer per instance"
            fi
        done
    done
    for s in "${names[@]}"; do
        for r in $BENCH_RECEIVERS; do
            k="$s|$r"
            if [[ -n "${BCPU[$k]:-}" ]]; then
                # shellcheck disable=SC2086
                echo "backend CPU, $s / $r (median of the runs): $(median ${BCPU[$k]}) ms per instance in its $(backend_of "$r") processes"
            fi
        done
    done
    local pair
    for s in "${names[@]}"; do
        for pair in radport/storescp baseline/storescp radport/baseline postgres/radport s3/radport postgres/storescp; do
            a=${RATE["$s|${pair%/*}"]:-}
            b=${RATE["$s|${pair#*/}"]:-}
            if [[ -n "$a" && -n "$b" && "$b" != 0 ]]; then
                echo "$pair images/s, $s: $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')"
            fi
        done
    done
    if [[ -n "$memcheck" ]]; then
        echo "radport peak RSS: ${PEAK["${names[0]}|radport"]:-?} MB for ${IMAGES["${names[0]}|radport"]:-?} instances vs." \
            "${PEAK["$memcheck|radport"]:-?} MB for $BENCH_PARALLEL_COUNT instances"
    fi
    if [[ " $BENCH_SCENARIOS " == *" cluster "* ]]; then
        # Three nodes behind HAProxy on PostgreSQL and Garage (bench/cluster.sh): CPU per
        # instance of each part, not a rate (every process shares this machine).
        echo
        echo "cluster: $BENCH_PARALLEL senders through HAProxy to three radport nodes (bench/cluster.sh)"
        BENCH_NO_BUILD=1 BENCH_COUNT="$BENCH_COUNT" BENCH_PARALLEL="$BENCH_PARALLEL" \
            bash "$ROOT/bench/cluster.sh" || FAILURES=$((FAILURES + 1))
    fi
    echo "disk reference: dd of 512 MiB with conv=fdatasync into $RUNS: ${disk_mbps:-?} MB/s (the ceiling for a receiver that syncs before it answers)"
    echo "floor (bench/floor.sh, one run each, before the runs; direct = answered once on disk, cache = once in the page cache):"
    printf '  %s\n' "${floor_lines[@]}"
    echo "logs: $LOGS"
    if (( FAILURES > 0 )); then
        die "$FAILURES run(s) failed: see above"
    fi
}

main "$@"
