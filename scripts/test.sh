#!/usr/bin/env bash
# The test command of the README: sets up what is missing, then runs every suite (unit, lab
# transport, end-to-end through the real pulumi CLI on namespaced hosts and a qemu VM).
# Extra arguments go to vitest (e.g. `bash scripts/test.sh --project unit`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
source scripts/env.sh
# Leftovers of a crashed earlier run (found by their own names and pid files) go first.
bash lab/netns/hosts.sh down --all >/dev/null 2>&1 || true
bash lab/vm/vm.sh cleanup >/dev/null 2>&1 || true
# Tests are type-checked too (vitest itself only strips types), and the API reference must build
# without a warning (every export documented).
npx tsc -p test/tsconfig.json
docs_log="$(npm run --silent docs 2>&1)" || { printf '%s\n' "$docs_log" >&2; exit 1; }
exec npx vitest run "$@"
