#!/usr/bin/env bash
# The test command of the README: sets up what is missing, then runs every suite (unit, lab
# transport, end-to-end through the real pulumi CLI on namespaced hosts and a qemu VM).
# Extra arguments go to one vitest run (e.g. `bash scripts/test.sh --project unit`); without any,
# the VM files and the rest run in two vitest processes side by side.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
source scripts/env.sh
# The tests' hosts and VMs live in a lab directory of their own, so the run stops only what test
# runs started: a demo VM (scripts/demo.sh, in the default lab directory) or another checkout's
# lab keeps running. Leftovers of this lab's own crashed runs (found by their names and pid files
# under it) go first.
export PULUMI_CONNTRACK_LAB_DIR="${PULUMI_CONNTRACK_LAB_DIR:-/tmp/pulumi-conntrack-lab-tests}"
bash lab/netns/hosts.sh down --all >/dev/null 2>&1 || true
bash lab/vm/vm.sh cleanup >/dev/null 2>&1 || true
# Tests are type-checked too (vitest itself only strips types), and the API reference must build
# without a warning (every export documented).
npx tsc -p test/tsconfig.json
docs_log="$(npm run --silent docs 2>&1)" || { printf '%s\n' "$docs_log" >&2; exit 1; }
# The release matrix (test/e2e/releases.vm.test.ts) boots one VM per Debian release, each
# through every resource. The suite runs it on Debian 11 and 13; on 12, every other VM file takes
# each resource through the same (PULUMI_CONNTRACK_RELEASES=bookworm runs the matrix there too).
export PULUMI_CONNTRACK_RELEASES="${PULUMI_CONNTRACK_RELEASES:-bullseye,trixie}"
[ $# -eq 0 ] || exec npx vitest run "$@"
# The whole suite in two lanes side by side: the vm project's files in one vitest process; the
# unit and netns files, then the vm-late project's, in the other. Each process runs its lab files
# one at a time (vitest.config.ts); vitest itself would run every one-at-a-time project in a
# single queue. A VM under emulation mostly waits on its guest, so the namespaced-host files fill
# the gaps; two VMs at once come only at the end, when the netns files are done.
started=$(date +%s)
( s=0; npx vitest run --project vm || s=$?; echo "test.sh: vm lane done after $(( $(date +%s) - started )) s (exit $s)"; exit $s ) &
vm=$!
( s=0; npx vitest run --project unit --project netns || s=$?
  echo "test.sh: unit and netns done after $(( $(date +%s) - started )) s (exit $s)"
  npx vitest run --project vm-late || s=$?
  echo "test.sh: unit, netns and vm-late lane done after $(( $(date +%s) - started )) s (exit $s)"; exit $s ) &
rest=$!
status=0
wait "$rest" || status=$?
wait "$vm" || status=$?
echo "test.sh: both lanes done (exit $status)"
exit "$status"
