#!/usr/bin/env bash
# Puts a benchmark's output into docs/performance.md, between its markers
#   <!-- bench:NAME:begin -->
#   <!-- bench:NAME:end -->
# (replacing what was there), with a line saying when it ran and the state of the machine.
#
# Usage:
#   bench/update-docs.sh run NAME SCRIPT [ARGS...]
#       What `BENCH_UPDATE_DOCS=1 bash bench/NAME.sh` does: notes the date, commit and machine
#       state, runs SCRIPT (with BENCH_UPDATE_DOCS=0) showing its output as usual, and if it
#       exits 0, replaces the block NAME with its standard output. A failed run changes nothing.
#   bench/update-docs.sh replace NAME OUTPUT_FILE [STATE_LINE]
#       Replaces the block NAME with a saved output (STATE_LINE: the line above it; default:
#       the date and this machine's state now).
#
# Environment: BENCH_DOCS=PATH edits another file than docs/performance.md (e.g. a copy).
#
# In the block, the output's Markdown tables are kept as printed, its headings become bold
# lines, its other lines paragraphs of their own, blank runs collapse and a last "logs: PATH"
# line (ingest.sh) is left out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCS="${BENCH_DOCS:-$ROOT/docs/performance.md}"

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" >&2; exit 2; }

# One line: when, at which commit, and what the machine had free (the page cache matters to
# the ingest benchmark, see docs/performance.md).
state_line() {
    local commit dirty=""
    commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ "$commit" != unknown && -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        dirty=" with uncommitted changes"
    fi
    local mem
    mem="$(awk '/^MemTotal:/ {t = $2} /^MemFree:/ {f = $2} /^MemAvailable:/ {a = $2} /^Cached:/ {c = $2}
        END {printf "%.1f GiB memory, %.1f GiB free, %.1f GiB page cache, %.1f GiB available",
             t / 1048576, f / 1048576, c / 1048576, a / 1048576}' /proc/meminfo 2>/dev/null || echo "memory unknown")"
    local load
    load="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
    printf '_%s, commit `%s`%s; %s CPUs, %s; load average %s._' \
        "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit" "$dirty" "$(nproc)" "$mem" "$load"
}

# replace_block NAME OUTPUT_FILE STATE_LINE
replace_block() {
    python3 - "$DOCS" "$1" "$2" "$3" <<'PY'
import os, re, sys

docs, name, output_file, state = sys.argv[1:5]
begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
text = open(docs, encoding="utf-8").read()
if text.count(begin) != 1 or text.count(end) != 1:
    sys.exit(f"update-docs: {docs} needs exactly one {begin} and one {end}")
start, stop = text.index(begin) + len(begin), text.index(end)
if start > stop:
    sys.exit(f"update-docs: {end} comes before {begin} in {docs}")

lines = open(output_file, encoding="utf-8", errors="replace").read().splitlines()
lines = [re.sub(r"\x1b\[[0-9;]*m", "", l).rstrip() for l in lines]
while lines and not lines[-1]:
    lines.pop()
if lines and lines[-1].startswith("logs: "):
    lines.pop()
# Blocks of the new content: runs of table rows stay together, every other line stands alone.
blocks, table = [], []
for line in lines:
    if line.startswith("|"):
        table.append(line)
        continue
    if table:
        blocks.append("\n".join(table))
        table = []
    if not line.strip():
        continue
    heading = re.match(r"#+\s+(.*)", line)
    blocks.append(f"**{heading.group(1)}**" if heading else line)
if table:
    blocks.append("\n".join(table))
if not blocks:
    sys.exit(f"update-docs: {output_file} is empty; {docs} left as it was")
if any(begin in b or end in b for b in blocks):
    sys.exit("update-docs: the output contains the block's own markers")

body = "\n" + "\n\n".join([state] + blocks) + "\n"
new = text[:start] + body + text[stop:]
tmp = f"{docs}.tmp.{os.getpid()}"
with open(tmp, "w", encoding="utf-8") as f:
    f.write(new)
os.replace(tmp, docs)
print(f"update-docs: block bench:{name} of {docs} replaced ({len(blocks)} parts)", file=sys.stderr)
PY
}

[[ $# -ge 1 ]] || usage
command -v python3 >/dev/null || { echo "update-docs: python3 is required" >&2; exit 1; }
case "$1" in
    run)
        [[ $# -ge 3 ]] || usage
        name=$2 script=$3; shift 3
        [[ -f "$DOCS" ]] || { echo "update-docs: $DOCS not found" >&2; exit 1; }
        grep -qF "<!-- bench:$name:begin -->" "$DOCS" \
            || { echo "update-docs: no block bench:$name in $DOCS" >&2; exit 1; }
        state="$(state_line)"   # before the run: the state the run started in
        out="$(mktemp "${TMPDIR:-/tmp}/bench-$name.XXXXXX")"
        rc=0
        # pipefail: a failing script fails the pipeline whatever tee does
        BENCH_UPDATE_DOCS=0 bash "$script" "$@" | tee "$out" || rc=$?
        if [[ $rc -ne 0 ]]; then
            echo "update-docs: $script failed (exit $rc): $DOCS left as it was; output in $out" >&2
            exit "$rc"
        fi
        replace_block "$name" "$out" "$state"
        rm -f "$out"
        ;;
    replace)
        [[ $# -ge 3 && $# -le 4 ]] || usage
        [[ -f "$DOCS" ]] || { echo "update-docs: $DOCS not found" >&2; exit 1; }
        [[ -f "$3" ]] || { echo "update-docs: $3 not found" >&2; exit 1; }
        replace_block "$2" "$3" "${4:-$(state_line)}"
        ;;
    *) usage ;;
esac
