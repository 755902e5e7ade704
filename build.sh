#!/usr/bin/env bash
# Fresh clone -> three standalone executables at the repo root.
# Needs only Node and npm: Bun 1.4.5 comes from the npm registry as a devDependency.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/bun ] || ! node_modules/.bin/bun --version >/dev/null 2>&1; then
  echo "build: installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi
echo "build: type-checking" >&2
node_modules/.bin/bun check
echo "build: compiling toastyfs, toastyfs_random_client, toastyfs_simulation" >&2
node_modules/.bin/bun run build.ts "$@"
rm -f ./*.map
echo "build: done" >&2
