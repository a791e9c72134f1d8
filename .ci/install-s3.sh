#!/usr/bin/env bash
# Installs what the object-storage tests (checkpoints/objstore, trainer export) need, each only when missing:
#   - versitygw v1.8.0, the S3-compatible server they start on loopback (go install: 2-4 minutes cold, so
#     it is skipped when versitygw is already in $PATH or $(go env GOPATH)/bin);
#   - awscli from Debian, the independent client that reads the exports back.
# Call it from .ci/run before the tests, and run the tests with SPARROW_REQUIRE_S3=1 so that a missing
# server fails them instead of skipping them.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
gobin="$(go env GOPATH | cut -d: -f1)/bin"

if command -v versitygw >/dev/null 2>&1; then
  echo "versitygw: $(command -v versitygw)"
elif [ -x "$gobin/versitygw" ]; then
  echo "versitygw: $gobin/versitygw"
else
  echo "installing versitygw $VERSITYGW_VERSION (go install)..."
  go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  echo "versitygw: $gobin/versitygw"
fi

if command -v aws >/dev/null 2>&1; then
  echo "awscli: $(command -v aws)"
else
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq awscli >/dev/null
  echo "awscli: $(command -v aws)"
fi
