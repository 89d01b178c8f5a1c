#!/usr/bin/env bash
# Install the pinned DuckDB (npm @duckdb/node-api, see package.json) into
# CACHE once, for journey_ref.mjs. Test and benchmark tooling only.
#   bash tests/reference/setup.sh CACHE
# Exit 0 when CACHE holds a working DuckDB, 77 (ctest's SKIP) when npm or
# the registry is unavailable, 2 on a usage error.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: setup.sh CACHE (directory to install DuckDB into)}
mkdir -p "$cache" && cache=$(cd "$cache" && pwd) || exit 2
version=$(sed -n 's/.*"@duckdb\/node-api": *"\([^"]*\)".*/\1/p' "$here/package.json")

works() {
  node --input-type=module -e "
    import { createRequire } from 'node:module';
    const req = createRequire('$cache/package.json');
    const v = req('@duckdb/node-api/package.json').version;
    if (v !== '$version') process.exit(1);
    const d = await import(req.resolve('@duckdb/node-api'));
    const c = await (await d.DuckDBInstance.create(':memory:')).connect();
    await c.run('SELECT 1');" 2>/dev/null
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup.sh: SKIP: node or npm is missing (deploy/install-deps.sh installs them)" >&2
  exit 77
fi
works && exit 0
cp "$here/package.json" "$cache/package.json"
if ! npm install --silent --no-audit --no-fund --prefix "$cache" >"$cache/npm.log" 2>&1; then
  echo "setup.sh: SKIP: npm could not install @duckdb/node-api@$version (see $cache/npm.log)" >&2
  exit 77
fi
works || {
  echo "setup.sh: SKIP: @duckdb/node-api@$version installed but does not load here" >&2
  exit 77
}
