#!/usr/bin/env bash
# Starts radport with embedded defaults (DICOM on 11112, HTTP on 8080, data in ./radport-data,
# the OHIF viewer from ./viewer at /viewer/ once scripts/install-viewer.sh has put it there).
# Extra arguments go to `radport serve` (see `radport serve --help`).
# The JPEG-LS codec (CharLS) builds with cmake: installed here if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
# The OHIF viewer at /viewer/, when npm is there to fetch it (radport serves without it).
if command -v npm >/dev/null 2>&1; then
  bash scripts/install-viewer.sh || echo "== the OHIF viewer could not be installed; serving without it"
fi
exec cargo run --release -p radport -- serve "$@"
