#!/usr/bin/env bash
# Prints a directory holding Node.js >= 22. Uses the node on PATH when it is new enough; otherwise
# installs the npm registry's `node@22` package (a real Node binary) into a cache outside the repo.
set -euo pipefail
cache="${PULUMI_CONNTRACK_CACHE:-$HOME/.cache/pulumi-conntrack}"
major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if command -v node >/dev/null && [ "$(major node)" -ge 22 ]; then
  dirname "$(command -v node)"
  exit 0
fi
dir="$cache/node-22"
if [ ! -x "$dir/node_modules/.bin/node" ] || [ "$(major "$dir/node_modules/.bin/node")" -lt 22 ]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch Node 22 (apt-get install npm)" >&2; exit 1; }
  echo "installing Node 22 from the npm registry into $dir" >&2
  mkdir -p "$dir"
  npm install --no-save --no-audit --no-fund --prefix "$dir" node@22 >&2
  # The package fetches its binary in an install script; if npm skipped it, say so plainly.
  [ "$(major "$dir/node_modules/.bin/node")" -ge 22 ] || { echo "node@22 from the npm registry did not install a working binary in $dir (were its install scripts blocked?)" >&2; exit 1; }
fi
echo "$dir/node_modules/.bin"
