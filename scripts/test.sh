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
cargo test --workspace --all-targets "$@"
