#!/usr/bin/env bash
# Ingest through three radport nodes on this one machine, the shape of README "Running several
# nodes": HAProxy (deploy/haproxy.cfg) in front, one PostgreSQL catalog (durable: fsync on, as
# deploy/postgresql.conf), a three-node Garage bucket (scripts/garage.sh, replication factor 3),
# BENCH_PARALLEL `dcmsend` at once through the balancer.
#
# Every process shares this machine's cores, so the wall-clock rate says little about a real
# cluster; the table therefore shows what each part spent in CPU per instance (utime + stime of
# the processes and their children, from /proc), and what that means for a cluster with one
# machine per node. Correctness is checked too: every instance sent is in the catalog once.
#
#   bash bench/cluster.sh
#
# Environment:
#   BENCH_DIR=/tmp/radport-bench-cluster   work dir (series cached under data/, a run under run/)
#   BENCH_PARALLEL=4        senders
#   BENCH_COUNT=1000        slices in all (512x512, 16-bit, ~0.5 MB each), split among the senders
#   BENCH_NO_BUILD=1        use the release binaries already built
#   GARAGE_BASE_PORT=23900  Garage's ports (scripts/garage.sh)
#
# Exit status: non-zero if anything fails to start, a sender fails, or the catalog does not hold
# every instance sent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-/tmp/radport-bench-cluster}"
BENCH_PARALLEL="${BENCH_PARALLEL:-4}"
BENCH_COUNT="${BENCH_COUNT:-1000}"
PER_SENDER=$(( BENCH_COUNT / BENCH_PARALLEL ))
export GARAGE_BASE_PORT="${GARAGE_BASE_PORT:-23900}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RADPORT="$TARGET_DIR/release/radport"
TESTKIT="$TARGET_DIR/release/radport-testkit"
DATA="$BENCH_DIR/data"
RUN="$BENCH_DIR/run"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

declare -a NODE_PIDS=() HTTP_PORTS=() DICOM_PORTS=()
HAPROXY_PID=""
cleanup() {
    local rc=$?
    local p
    for p in "${NODE_PIDS[@]:-}" $HAPROXY_PID; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    [[ -d "$RUN/garage" ]] && bash "$ROOT/scripts/garage.sh" stop "$RUN/garage" >/dev/null 2>&1 || true
    [[ -d "$RUN/pg/data" ]] && bash "$ROOT/scripts/postgres.sh" stop "$RUN/pg" >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT

# CPU seconds (user + system) of a process and of its children that it has waited for.
cpu_seconds() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    # The fields after the command name, which may hold spaces: 14-17 are utime stime cutime cstime.
    echo "${stat##*) }" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f\n", ($12 + $13 + $14 + $15) / hz}'
}
# The same summed over a process and its live children (PostgreSQL's backends).
cpu_seconds_tree() {
    local total pid
    total=$(cpu_seconds "$1")
    for pid in $(ps -o pid= --ppid "$1"); do
        total=$(echo "$total $(cpu_seconds "$pid")" | awk '{printf "%.3f", $1 + $2}')
    done
    echo "$total"
}

# --- build and data ---------------------------------------------------------------------------
[[ -n "$PG_BIN" ]] || die "PostgreSQL is not installed (scripts/install-deps.sh)"
[[ -x /usr/sbin/haproxy ]] || die "HAProxy is not installed (scripts/install-deps.sh)"
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    log "building radport and radport-testkit in release"
    (cd "$ROOT" && cargo build --release -q -p radport -p radport-testkit)
fi
[[ -x "$RADPORT" && -x "$TESTKIT" ]] || die "release binaries missing: cargo build --release -p radport -p radport-testkit"
mkdir -p "$DATA"
declare -a DIRS=()
for i in $(seq 1 "$BENCH_PARALLEL"); do
    dir="$DATA/p-$PER_SENDER-$i"
    if [[ "$(cat "$dir.complete" 2>/dev/null)" != "$PER_SENDER" ]]; then
        rm -rf "$dir"
        log "generating $PER_SENDER slices 512x512 in $dir"
        "$TESTKIT" make-series --out "$dir" --count "$PER_SENDER" --rows 512 --columns 512 \
            --seed "300$i" >/dev/null
        echo "$PER_SENDER" >"$dir.complete"
    fi
    DIRS+=("$dir")
    find "$dir" -type f -name '*.dcm' -exec cat {} + >/dev/null
done

# --- the cluster ------------------------------------------------------------------------------
rm -rf "$RUN"
mkdir -p "$RUN"
PG_PORT=$(free_port)
log "PostgreSQL on port $PG_PORT (fsync on)"
bash "$ROOT/scripts/postgres.sh" start "$RUN/pg" "$PG_PORT"
PG_PID=$(head -1 "$RUN/pg/data/postmaster.pid")
CATALOG_URL="postgres://radport@127.0.0.1:$PG_PORT/postgres"

log "Garage, three nodes (ports from $GARAGE_BASE_PORT)"
bash "$ROOT/scripts/garage.sh" start "$RUN/garage" >/dev/null
set -a
# shellcheck disable=SC1091
. "$RUN/garage/env"
set +a

log "three radport nodes"
for n in 0 1 2; do
    DICOM_PORTS+=("$(free_port)")
    HTTP_PORTS+=("$(free_port)")
    mkdir -p "$RUN/node$n"
    # The pipeline waits an hour: only ingest is measured.
    RADPORT_ACCESS=open NO_COLOR=1 setsid "$RADPORT" serve --data-dir "$RUN/node$n" \
        --catalog-url "$CATALOG_URL" --archive-url "$RADPORT_ARCHIVE_URL" \
        --dicom-port "${DICOM_PORTS[$n]}" --http-port "${HTTP_PORTS[$n]}" --bind 127.0.0.1 \
        --stable-after 3600 --proxy-protocol-from 127.0.0.1 >"$RUN/node$n.log" 2>&1 &
    NODE_PIDS+=("$!")
done
for n in 0 1 2; do
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:${HTTP_PORTS[$n]}/api/health/ready" >/dev/null 2>&1 && break
        kill -0 "${NODE_PIDS[$n]}" 2>/dev/null || { tail -20 "$RUN/node$n.log" >&2; die "node $n exited"; }
        sleep 0.1
    done
done

FRONT_DICOM=$(free_port)
FRONT_HTTP=$(free_port)
sed -e "s/127.0.0.1:11112/127.0.0.1:$FRONT_DICOM/" -e "s/127.0.0.1:8080/127.0.0.1:$FRONT_HTTP/" \
    -e "s/127.0.0.1:11113/127.0.0.1:${DICOM_PORTS[0]}/" -e "s/127.0.0.1:11114/127.0.0.1:${DICOM_PORTS[1]}/" \
    -e "s/127.0.0.1:11115/127.0.0.1:${DICOM_PORTS[2]}/" -e "s/127.0.0.1:8081/127.0.0.1:${HTTP_PORTS[0]}/" \
    -e "s/127.0.0.1:8082/127.0.0.1:${HTTP_PORTS[1]}/" -e "s/127.0.0.1:8083/127.0.0.1:${HTTP_PORTS[2]}/" \
    "$ROOT/deploy/haproxy.cfg" >"$RUN/haproxy.cfg"
/usr/sbin/haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
HAPROXY_PID=$!
for _ in $(seq 100); do
    up=0
    for _ in 1 2 3; do
        curl -fsS "http://127.0.0.1:$FRONT_HTTP/api/health/ready" >/dev/null 2>&1 && up=$((up + 1))
    done
    [[ $up == 3 ]] && break
    sleep 0.2
done
[[ $up == 3 ]] || die "HAProxy does not see three ready nodes"

# --- the run ----------------------------------------------------------------------------------
GARAGE_PIDS=$(cat "$RUN"/garage/node*.pid)
declare -A BEFORE=()
snapshot() {
    local n
    for n in 0 1 2; do BEFORE[node$n]=$(cpu_seconds "${NODE_PIDS[$n]}"); done
    BEFORE[garage]=0
    for p in $GARAGE_PIDS; do
        BEFORE[garage]=$(echo "${BEFORE[garage]} $(cpu_seconds "$p")" | awk '{printf "%.3f", $1 + $2}')
    done
    BEFORE[postgresql]=$(cpu_seconds_tree "$PG_PID")
    BEFORE[haproxy]=$(cpu_seconds "$HAPROXY_PID")
}
snapshot
declare -A START=()
for k in "${!BEFORE[@]}"; do START[$k]=${BEFORE[$k]}; done

log "$BENCH_PARALLEL senders, $BENCH_COUNT slices in all, through the balancer"
t0=$(date +%s.%N)
declare -a SENDERS=()
for i in $(seq 1 "$BENCH_PARALLEL"); do
    /usr/bin/dcmsend 127.0.0.1 "$FRONT_DICOM" --aetitle "kp-cluster$i" --call kp-admin \
        --scan-directories --scan-pattern '*.dcm' --recurse "${DIRS[$((i - 1))]}" \
        >"$RUN/dcmsend-$i.log" 2>&1 &
    SENDERS+=("$!")
done
failed=0
for p in "${SENDERS[@]}"; do wait "$p" || failed=$((failed + 1)); done
t1=$(date +%s.%N)
[[ $failed == 0 ]] || die "$failed sender(s) failed (logs: $RUN/dcmsend-*.log)"
snapshot

# Instances each node stored (its /metrics), and the catalog's total.
declare -a STORED=()
for n in 0 1 2; do
    STORED+=("$(curl -fsS "http://127.0.0.1:${HTTP_PORTS[$n]}/metrics" \
        | awk '/^radport_instances_received_total\{channel="dimse",disposition="stored"\}/ {print $2}' \
        | awk '{printf "%d", $1}')")
    [[ -n "${STORED[$n]}" ]] || STORED[n]=0
done
total=$(curl -fsS "http://127.0.0.1:$FRONT_HTTP/api/projects/admin/series?limit=100" | python3 -c '
import json, sys
page = json.load(sys.stdin)
print(sum(int(s["instance_count"]) for s in page["items"]))')
sent=$(( PER_SENDER * BENCH_PARALLEL ))
[[ "$total" == "$sent" ]] || die "the catalog holds $total instances, $sent were sent"

wall=$(echo "$t0 $t1" | awk '{printf "%.1f", $2 - $1}')
cpu() { echo "${START[$1]} ${BEFORE[$1]}" | awk '{printf "%.2f", $2 - $1}'; }
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB memory, $(date -u +%F); $sent instances of ~0.5 MB from $BENCH_PARALLEL dcmsend through HAProxy in $wall s ($(echo "$sent $wall" | awk '{printf "%.0f", $1 / $2}') instances/s, every process on these cores)"
echo
echo "| part | instances | CPU s | CPU ms per instance stored |"
echo "|---|---:|---:|---:|"
all=0
for n in 0 1 2; do
    c=$(cpu "node$n")
    per=$(echo "$c ${STORED[$n]}" | awk '{ if ($2 > 0) printf "%.2f", 1000 * $1 / $2; else print "-" }')
    echo "| radport node $n | ${STORED[$n]} | $c | $per |"
done
nodes_cpu=$(echo "$(cpu node0) $(cpu node1) $(cpu node2)" | awk '{printf "%.2f", $1 + $2 + $3}')
for part in garage postgresql haproxy; do
    c=$(cpu "$part")
    echo "| $part (all its processes) | $sent | $c | $(echo "$c $sent" | awk '{printf "%.2f", 1000 * $1 / $2}') |"
done
for part in node0 node1 node2 garage postgresql haproxy; do all=$(echo "$all $(cpu "$part")" | awk '{printf "%.2f", $1 + $2}'); done
echo "| all | $sent | $all | $(echo "$all $sent" | awk '{printf "%.2f", 1000 * $1 / $2}') |"
echo
per_node=$(echo "$nodes_cpu $sent" | awk '{printf "%.2f", 1000 * $1 / $2}')
echo "A radport node spent $per_node ms of CPU per instance: one core of a node's own machine"
echo "takes about $(echo "$per_node" | awk '{printf "%.0f", 1000 / $1}') instances/s before its disk, network or the shared"
echo "catalog and store limit it (see docs/performance.md for what those take)."
