#!/usr/bin/env bash
# Installs the system packages Curvewatch's tests and tools use, if missing (idempotent,
# non-interactive). Java 17 and Maven are assumed (they come with the machine).
#   python3-*     : the PyTorch client, and the independent numpy/scipy/torch references of tests
#   libopenblas0-pthread, liblapack3 : native BLAS/LAPACK for dev.ludovic.netlib (optional backend)
set -euo pipefail
packages=(python3-numpy python3-scipy python3-torch python3-confluent-kafka python3-avro
          libopenblas0-pthread liblapack3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "install-prereqs: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-prereqs: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
