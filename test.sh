#!/usr/bin/env bash
# The test command: builds (which installs dependencies and type-checks), then runs every test.
# Prints "N passed, N failed, N skipped" at the end; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")"
./build.sh || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }
mkdir -p reports
rm -f reports/junit.xml
node_modules/.bin/bun test --reporter=junit --reporter-outfile=reports/junit.xml "$@"
rc=$?
node_modules/.bin/bun scripts/test-summary.ts reports/junit.xml || rc=1
exit $rc
