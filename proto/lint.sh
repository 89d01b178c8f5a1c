#!/usr/bin/env bash
# Lint the cxm.v1 contract with buf (npm package @bufbuild/buf, pinned).
#   bash proto/lint.sh [CACHE_DIR]   buf is installed into CACHE_DIR once
set -euo pipefail
BUF_VERSION=1.75.0
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/../build/buf-cache}
buf=$cache/node_modules/.bin/buf

if [ ! -x "$buf" ] || ! "$buf" --version 2>/dev/null | grep -qx "$BUF_VERSION"; then
  command -v npm >/dev/null || {
    echo "proto/lint.sh: npm is missing; run deploy/install-deps.sh (installs nodejs and npm)" >&2
    exit 1
  }
  mkdir -p "$cache"
  npm install --silent --no-audit --no-fund --prefix "$cache" "@bufbuild/buf@$BUF_VERSION" >&2
fi
cd "$here"
"$buf" lint
echo "buf lint: cxm.v1 is clean"
