#!/usr/bin/env bash
# Installs Debian's nats-server (2.9.x), the external server the bus tests (cmd/trainer/bus_test.go) start
# as a separate process on loopback, unless it is already in $PATH. Call it from .ci/run before the tests
# and run them with SPARROW_REQUIRE_NATS=1 so that a missing server fails them instead of skipping them.
set -euo pipefail

if command -v nats-server >/dev/null 2>&1; then
  echo "nats-server: $(command -v nats-server) ($(nats-server --version 2>/dev/null || true))"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
# the package enables a system service; the tests start their own servers
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
echo "nats-server: $(command -v nats-server) ($(nats-server --version))"
