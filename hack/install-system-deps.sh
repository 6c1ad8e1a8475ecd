#!/usr/bin/env bash
# Debian packages the tests and the demo need: Prometheus (run directly, never as a service) and
# Chromium (headless, to render the HTML compliance report in the tests).
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "[system-deps] apt-get install prometheus chromium"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null
# The package enables a systemd unit; nothing here relies on it, and tests start their own instance.
prometheus --version 2>&1 | head -n 1
chromium --version 2>&1 | head -n 1
