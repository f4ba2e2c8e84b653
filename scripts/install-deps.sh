#!/usr/bin/env bash
# Installs what building and testing radport needs beyond a Rust toolchain and gcc, with
# apt-get: cmake (CharLS, the JPEG-LS codec, builds with it), DCMTK and GDCM's tools and
# dicom3tools (the real peers the tests talk to and use as oracles), PostgreSQL (the catalog's
# tests run on it too), dcm2niix (round-trip oracle of the NIfTI conversion); with pip:
# highdicom (SEG fixtures and oracle), nibabel (its sample NIfTI files) and pydicom-data
# (pydicom's larger set of sample files: enhanced CT/MR, SEG, SR for the validator's tests),
# boto3 (the distributed tests' S3 client); Garage (a replicated S3 store) with cargo install.
# Does nothing for what is already there.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
[ -x /usr/bin/dcmsend ] && [ -x /usr/bin/dcmj2pnm ] || missing+=(dcmtk)
[ -x /usr/bin/gdcmconv ] || missing+=(libgdcm-tools)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/dciodvfy ] || missing+=(dicom3tools)
[ -x /usr/bin/dcm2niix ] || missing+=(dcm2niix)
# openssl makes the tests' certificates (scripts/test-certs.sh, the HTTPS test); curl is the
# HTTPS client of that test.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The audit export's oracles: xmllint checks messages against the DICOM audit schema, and
# rsyslogd is the syslog collector the export test sends to.
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
[ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
# The load balancer in front of several radport nodes (tests/cluster.rs, deploy/haproxy.cfg).
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# The durability proof records the receiver's system calls (tests/durability.rs).
command -v strace >/dev/null 2>&1 || missing+=(strace)

if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import highdicom, nibabel, data_store' >/dev/null 2>&1; then
  echo "== installing Python test oracles: highdicom, nibabel, pydicom-data"
  python3 -m pip install -q highdicom nibabel pydicom-data
fi

# The DICOMweb tests (crates/radport/tests/dicomweb.rs) use the users' own client: dicomweb-client
# (its Python API and its `dicomweb_client` command line).
if ! python3 -c 'import dicomweb_client' >/dev/null 2>&1; then
  echo "== installing the DICOMweb test client: dicomweb-client"
  python3 -m pip install -q dicomweb-client
fi

# The query/retrieve tests (crates/radport/tests/query_retrieve.rs) run pynetdicom's SCUs. It
# installs apps named findscu, getscu, storescp … on PATH: tests call DCMTK's by full path.
if ! python3 -c 'import pynetdicom' >/dev/null 2>&1; then
  echo "== installing pynetdicom (query/retrieve tests)"
  python3 -m pip install -q pynetdicom
fi

# The distributed tests (crates/radport/tests/distributed.rs, cluster.rs) run radport on Garage,
# a replicated S3-compatible store (three nodes on loopback, scripts/garage.sh), built from
# crates.io once (about 8 minutes on 2 cores; Debian does not package it, MinIO is not
# packaged, and radosgw needs Ceph), and check the bucket through boto3. HAProxy (Debian)
# balances the three radport nodes of cluster.rs.
bash "$(dirname "$0")/garage.sh" install
if ! python3 -c 'import boto3' >/dev/null 2>&1; then
  echo "== installing boto3 (the distributed tests' S3 oracle)"
  python3 -m pip install -q boto3
fi

# GET /metrics is read by the Prometheus project's own OpenMetrics parser
# (crates/radport/tests/metrics.rs).
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "== installing prometheus-client (the /metrics test's OpenMetrics parser)"
  python3 -m pip install -q prometheus-client
fi

# The web UI's browser tests (crates/radport/tests/browser.rs): Debian's Chromium, driven by
# playwright-core from npm (no browser download: it launches /usr/bin/chromium).
if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "== installing the browser tests' Chromium and node"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  pkgs=(chromium)
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
browser_tests="$(cd "$(dirname "$0")/.." && pwd)/crates/radport/tests/browser"
if [ ! -d "$browser_tests/node_modules/playwright-core" ]; then
  echo "== installing playwright-core for the browser tests"
  (cd "$browser_tests" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The OHIF viewer radport serves at /viewer/ (optional: skipped without npm).
bash "$(dirname "$0")/install-viewer.sh" || echo "== the OHIF viewer could not be installed (radport runs without it)"

# The single sign-on tests (crates/radport/tests/oidc.rs): a real OpenID provider, the certified
# oidc-provider from npm, run with node (installed above).
oidc_tests="$(cd "$(dirname "$0")/.." && pwd)/crates/radport/tests/oidc"
if [ ! -d "$oidc_tests/node_modules/oidc-provider" ]; then
  echo "== installing oidc-provider for the single sign-on tests"
  (cd "$oidc_tests" && npm ci --no-audit --no-fund --loglevel=error)
fi
