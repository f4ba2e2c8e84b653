#!/usr/bin/env bash
# Garage (https://garagehq.deuxfleurs.fr), a replicated S3-compatible object store: three nodes
# on loopback with replication factor 3, one bucket and one access key for radport. Shared by
# the distributed tests and by README's "Running several nodes".
#
#   scripts/garage.sh install           cargo install garage (GARAGE_VERSION) unless `garage` is
#                                       on PATH or in ~/.cargo/bin; about 8 minutes on 2 cores
#   scripts/garage.sh start DIR         three nodes under DIR (created), ports from
#                                       GARAGE_BASE_PORT (default 3900: node n uses
#                                       BASE+10n+0 for S3, +1 for RPC, +3 for admin), the layout
#                                       applied, bucket `radport` and a key that may use it.
#                                       Writes DIR/env (AWS_* variables and RADPORT_ARCHIVE_URL
#                                       for `radport serve`) and prints it.
#   scripts/garage.sh stop DIR          stops every node of DIR
#   scripts/garage.sh stop-node DIR N   stops node N (0, 1 or 2): what a failed machine does
#   scripts/garage.sh start-node DIR N  starts node N again (it catches up by itself)
#   scripts/garage.sh repair DIR        full sync of the metadata tables, then of the data blocks,
#                                       on every node, at full speed: a node back from an outage
#                                       catches up at once (by itself, Garage's anti-entropy and
#                                       resync take 10-20 min); run it again until
#                                       `garage stats` shows an empty resync queue
#   scripts/garage.sh status DIR        `garage status` of the cluster
#
# Each node keeps its metadata (LMDB) and data under DIR/nodeN; logs in DIR/nodeN.log.
set -euo pipefail

GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
BUCKET="${GARAGE_BUCKET:-radport}"
REGION="garage"

garage_bin() {
    if command -v garage >/dev/null 2>&1; then
        command -v garage
    elif [[ -x "$HOME/.cargo/bin/garage" ]]; then
        echo "$HOME/.cargo/bin/garage"
    else
        return 1
    fi
}

install() {
    if garage_bin >/dev/null; then
        echo "garage: $("$(garage_bin)" --version 2>/dev/null | head -1)"
        return
    fi
    echo "building garage $GARAGE_VERSION from crates.io (LMDB metadata only; a few minutes)"
    cargo install garage --version "$GARAGE_VERSION" --locked --no-default-features \
        --features bundled-libs,lmdb
}

base_port() { echo "${GARAGE_BASE_PORT:-3900}"; }
s3_port() { echo $(( $(base_port) + 10 * $1 )); }
rpc_port() { echo $(( $(base_port) + 10 * $1 + 1 )); }
admin_port() { echo $(( $(base_port) + 10 * $1 + 3 )); }

config() { echo "$1/node$2.toml"; }

g() { # g DIR N args…: the garage CLI against node N
    local dir=$1 n=$2
    shift 2
    "$(garage_bin)" -c "$(config "$dir" "$n")" "$@"
}

write_config() {
    local dir=$1 n=$2 secret=$3
    mkdir -p "$dir/node$n/meta" "$dir/node$n/data"
    cat >"$(config "$dir" "$n")" <<EOF
metadata_dir = "$dir/node$n/meta"
data_dir = "$dir/node$n/data"
db_engine = "lmdb"
replication_factor = 3
consistency_mode = "consistent"
metadata_fsync = true
data_fsync = true
rpc_bind_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_public_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$(s3_port "$n")"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$(admin_port "$n")"
EOF
}

listening() { # listening PORT: something accepts TCP connections on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

retry() { # retry CMD…: up to 50 tries 0.2 s apart (a peer that is still starting)
    local attempt
    for attempt in $(seq 50); do
        if "$@"; then return 0; fi
        [[ $attempt -lt 50 ]] && sleep 0.2
    done
    "$@"
}

start_node() {
    local dir=$1 n=$2
    if [[ -f "$dir/node$n.pid" ]] && kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
        return
    fi
    RUST_LOG="${GARAGE_LOG:-garage=warn}" setsid "$(garage_bin)" -c "$(config "$dir" "$n")" server \
        >>"$dir/node$n.log" 2>&1 </dev/null &
    echo $! >"$dir/node$n.pid"
    # Up when its RPC and S3 ports accept connections (`node id` alone answers from the key
    # file, before the server listens). A node that exits (a port taken) fails with code 3.
    for _ in $(seq 300); do
        if listening "$(rpc_port "$n")" && listening "$(s3_port "$n")"; then
            return
        fi
        kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null || {
            echo "garage node $n exited:" >&2
            tail -20 "$dir/node$n.log" >&2
            exit 3
        }
        sleep 0.1
    done
    echo "garage node $n did not answer:" >&2
    tail -20 "$dir/node$n.log" >&2
    exit 1
}

stop_node() {
    local dir=$1 n=$2
    [[ -f "$dir/node$n.pid" ]] || return 0
    local pid
    pid=$(cat "$dir/node$n.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/node$n.pid"
}

layout_applied() { g "$1" 0 layout show 2>/dev/null | grep -q "Current cluster layout version: [1-9]"; }

apply_layout() { layout_applied "$1" || g "$1" 0 layout apply --version 1 >/dev/null; }

start() {
    local dir=$1
    garage_bin >/dev/null || { echo "garage is not installed: scripts/garage.sh install" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local secret
    if [[ -f "$dir/rpc_secret" ]]; then
        secret=$(cat "$dir/rpc_secret")
    else
        secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
        echo "$secret" >"$dir/rpc_secret"
    fi
    for n in 0 1 2; do write_config "$dir" "$n" "$secret"; start_node "$dir" "$n"; done
    # Connect the nodes, then give each a role: one zone each, so every object is on all three.
    for n in 1 2; do retry g "$dir" 0 node connect "$(g "$dir" "$n" node id -q)" >/dev/null; done
    if ! layout_applied "$dir"; then
        for n in 0 1 2; do
            local id
            id=$(g "$dir" "$n" node id -q | cut -d@ -f1)
            retry g "$dir" 0 layout assign -z "zone$n" -c 1G "$id" >/dev/null
        done
        retry apply_layout "$dir"
    fi
    # Bucket and key, once.
    if [[ ! -f "$dir/key" ]]; then
        for _ in $(seq 50); do
            g "$dir" 0 bucket create "$BUCKET" >/dev/null 2>&1 && break
            g "$dir" 0 bucket info "$BUCKET" >/dev/null 2>&1 && break
            sleep 0.2
        done
        g "$dir" 0 key create radport >"$dir/key.txt"
        local key_id secret_key
        key_id=$(awk -F': *' '/Key ID/ {print $2; exit}' "$dir/key.txt")
        secret_key=$(awk -F': *' '/Secret key/ {print $2; exit}' "$dir/key.txt")
        [[ -n "$key_id" && -n "$secret_key" ]] || { echo "no key in:" >&2; cat "$dir/key.txt" >&2; exit 1; }
        g "$dir" 0 bucket allow --read --write --owner "$BUCKET" --key "$key_id" >/dev/null
        printf '%s %s\n' "$key_id" "$secret_key" >"$dir/key"
    fi
    local key_id secret_key
    read -r key_id secret_key <"$dir/key"
    cat >"$dir/env" <<EOF
AWS_ENDPOINT_URL=http://127.0.0.1:$(s3_port 0)
AWS_ALLOW_HTTP=true
AWS_REGION=$REGION
AWS_ACCESS_KEY_ID=$key_id
AWS_SECRET_ACCESS_KEY=$secret_key
RADPORT_ARCHIVE_URL=s3://$BUCKET
GARAGE_S3_ENDPOINTS=http://127.0.0.1:$(s3_port 0),http://127.0.0.1:$(s3_port 1),http://127.0.0.1:$(s3_port 2)
EOF
    # Ready when a write goes through the S3 API of every node (the layout has propagated).
    for n in 0 1 2; do
        for attempt in $(seq 100); do
            if g "$dir" "$n" bucket info "$BUCKET" >/dev/null 2>&1; then break; fi
            [[ $attempt -lt 100 ]] || { echo "node $n does not know the bucket" >&2; exit 1; }
            sleep 0.1
        done
    done
    cat "$dir/env"
}

stop() {
    local dir=$1
    for n in 0 1 2; do stop_node "$dir" "$n"; done
}

cmd="${1:-}"
case "$cmd" in
    install) install ;;
    start) start "${2:?DIR}" ;;
    stop) stop "${2:?DIR}" ;;
    stop-node) stop_node "${2:?DIR}" "${3:?N}" ;;
    start-node)
        start_node "${2:?DIR}" "${3:?N}"
        # Back into the cluster at once (the others would retry the connection only later).
        for m in 0 1 2; do
            [[ "$m" == "$3" ]] && continue
            g "$2" "$3" node connect "$(g "$2" "$m" node id -q)" >/dev/null 2>&1 || true
        done
        ;;
    repair)
        # Resync at full speed (the defaults pace it to leave room for requests).
        g "${2:?DIR}" 0 worker set --all-nodes resync-tranquility 0 >/dev/null
        g "${2:?DIR}" 0 repair --all-nodes --yes tables >/dev/null
        # A block learnt of through the tables is queued for a check 2 × rpc_timeout later
        # (10 min by default) and a queued check is never moved earlier: empty the queue, then
        # queue every block referenced or on disk for now.
        g "${2:?DIR}" 0 repair --all-nodes --yes clear-resync-queue >/dev/null
        g "${2:?DIR}" 0 repair --all-nodes --yes blocks >/dev/null
        ;;
    status) g "${2:?DIR}" 0 status ;;
    *) sed -n '2,21p' "$0"; exit 2 ;;
esac
