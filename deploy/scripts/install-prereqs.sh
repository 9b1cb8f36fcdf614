#!/usr/bin/env bash
# Installs the system packages Curvewatch's tests and tools use, if missing (idempotent,
# non-interactive). Java 17 and Maven are assumed (they come with the machine), and so are
# Node.js >= 20 and npm for the dashboard's browser test.
#   python3-*     : the PyTorch client, and the independent numpy/scipy/torch references of tests
#   python3-venv : TransformerExampleIT installs the client with pip into a throwaway venv (its pip comes with it)
#   libopenblas0-pthread, liblapack3 : native BLAS/LAPACK for dev.ludovic.netlib (optional backend)
#   fortunes     : real English text (quotes under /usr/share/games/fortunes) for the transformer examples
#   python3-onnx : reads all-MiniLM-L6-v2's ONNX weights (Maven Central jar) for the pretrained-transformer experiment
#   python3-matplotlib : the transformer experiments' report figures (clients/python/examples/memorization)
#   chromium, fonts-liberation : the headless browser of the dashboard test (DashboardBrowserIT),
#                   driven by playwright-core from service/src/test/browser (npm ci below)
#   prometheus-alertmanager : the real Alertmanager the alert sinks are tested against (AlertSinksIT);
#                   the test starts its own on free ports (the package's systemd unit is not needed)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
packages=(python3-numpy python3-scipy python3-torch python3-confluent-kafka python3-avro python3-venv
          fortunes python3-onnx python3-matplotlib libopenblas0-pthread liblapack3 chromium fonts-liberation prometheus-alertmanager)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "install-prereqs: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-prereqs: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The dashboard browser test's npm packages (playwright-core, pinned by package-lock.json), only
# when node_modules does not already hold the locked version.
browser="$root/service/src/test/browser"
if [[ -f "$browser/package-lock.json" ]]; then
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "install-prereqs: WARNING: node/npm not found: DashboardBrowserIT will be skipped" >&2
  else
    want=$(node -p 'require(process.argv[1]).packages["node_modules/playwright-core"].version' "$browser/package-lock.json")
    have=$(node -p 'try { require(process.argv[1]).version } catch (e) { "" }' "$browser/node_modules/playwright-core/package.json")
    if [[ "$want" != "$have" ]]; then
      echo "install-prereqs: npm ci in service/src/test/browser (playwright-core $want)" >&2
      npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error >/dev/null
    fi
  fi
fi
