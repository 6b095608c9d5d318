#!/usr/bin/env bash
# What tests/test_jupyterlab_browser.py needs beyond the Python packages of the [test] extra
# (playwright, jupyterlab): Debian's headless-capable Chromium at /usr/bin/chromium.
# Only apt packages; nothing here downloads a browser (never run `playwright install`).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium chromium-driver
echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
