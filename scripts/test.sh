#!/usr/bin/env bash
# Runs every radport test on a fresh Debian machine: installs the real peers the tests talk to
# (DCMTK's dcmsend/storescu/echoscu, dicom3tools), then `cargo test` over the whole workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in dcmsend storescu echoscu dcmodify dcmcjpeg dcmcjpls dcmcrle dcmconv dcmftest; do
  [ -x "/usr/bin/$tool" ] || need+=(dcmtk)
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing test tools: dcmtk"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dcmtk >/dev/null
fi

echo "== cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one "test result" line per binary).
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | awk '{s+=$2} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
