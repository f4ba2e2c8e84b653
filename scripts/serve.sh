#!/usr/bin/env bash
# Starts radport with embedded defaults (DICOM on 11112, HTTP on 8080, data in ./radport-data).
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
exec cargo run --release -p radport -- serve "$@"
