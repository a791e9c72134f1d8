#!/usr/bin/env bash
# Re-vendors uPlot (npm `uplot`, MIT) into static/vendor/: the minified IIFE build, its CSS and its LICENSE.
# The vendored files are committed, so building Sparrow needs no network; run this only to change the version.
set -euo pipefail
VERSION="${1:-1.6.32}"
cd "$(dirname "$0")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "uplot@${VERSION}" >/dev/null && tar xzf "uplot-${VERSION}.tgz")
mkdir -p static/vendor
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" static/vendor/
cp "$tmp/package/LICENSE" static/vendor/uPlot.LICENSE
echo "uPlot ${VERSION} vendored into $(pwd)/static/vendor"
