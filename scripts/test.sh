#!/usr/bin/env bash
# The test command of the README: sets up what is missing, then runs every suite (unit, lab
# transport, end-to-end through the real pulumi CLI on namespaced hosts and a qemu VM).
# Extra arguments go to one vitest run (e.g. `bash scripts/test.sh --project unit`); without any,
# the VM files and the rest run in two vitest processes side by side.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# The tests' hosts and VMs live in a lab directory of their own (test/lab/host.ts has the same
# default for vitest run directly), so the run stops only what test runs started: a demo VM
# (scripts/demo.sh, in the scripts' default lab directory) or another lab directory's hosts keep
# running.
export PULUMI_CONNTRACK_LAB_DIR="${PULUMI_CONNTRACK_LAB_DIR:-/tmp/pulumi-conntrack-lab-tests}"
# One run at a time per lab directory: a second one would take the first one's hosts and VMs for
# leftovers and stop them. The lock is fd 9, held by this script and inherited by every process of
# the run, so it is free again only when the last of them is gone; the lab's daemons that may
# outlive a run (hosts.sh's sshds, vm.sh's qemu) are started with fd 9 closed.
mkdir -p "$PULUMI_CONNTRACK_LAB_DIR"
run_lock="$(realpath -m -- "$PULUMI_CONNTRACK_LAB_DIR")/test-run.lock"
exec 9>>"$run_lock"
if ! flock -n 9; then
  taker="$(cat "$run_lock" 2>/dev/null)" || true
  holders="$(exec 9>&-; find /proc/[0-9]*/fd -lname "$run_lock" -printf '%h\n' 2>/dev/null | cut -d/ -f3 | grep -vx "$$" | sort -un | xargs)" || true
  echo "test.sh: another test run is using the lab in $PULUMI_CONNTRACK_LAB_DIR: it holds $run_lock" \
    "(taken by ${taker:-a run that recorded nothing}; processes holding it now: ${holders:-none found})." \
    "This run stopped nothing. Wait for that run to end, or stop it (kill those processes), then run again." >&2
  exit 1
fi
printf 'pid %s, checkout %s, at %s\n' "$$" "$repo" "$(date '+%F %T')" >"$run_lock"
# Setup without the lock's fd: a daemon an install starts would hold it after the run.
bash scripts/setup.sh 9>&-
source scripts/env.sh
# Leftovers of this lab directory's own crashed runs (found by their state, names, markers and
# pid files under it) go first.
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
