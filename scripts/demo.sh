#!/usr/bin/env bash
# The README's main job: boot a disposable lab VM (Debian 12, real kernel, under qemu), then run
# `pulumi preview --diff` and `pulumi up` of examples/local-host against it.
# `bash scripts/demo.sh down` destroys the stack and throws the VM away.
# Everything the demo writes stays under .lab/demo/ (gitignored): the file backend, PULUMI_HOME,
# and a copy of the example with its stack config (Pulumi.demo.yaml: the VM's address, host key and
# private key as a secret; `down` removes it). No tracked file is written.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
[ "${1:-}" = down ] || bash scripts/setup.sh
source scripts/env.sh
state="$repo/.lab/demo"
program="$state/program"
mkdir -p "$state/backend" "$state/home"
export PULUMI_BACKEND_URL="file://$state/backend" PULUMI_HOME="$state/home"
stack=demo

if [ "${1:-}" = down ]; then
  if [ -f "$program/Pulumi.yaml" ]; then
    # stack rm also deletes the stack's config file.
    (cd "$program" && pulumi stack select "$stack" >/dev/null 2>&1 && pulumi destroy --yes --stack "$stack" && pulumi stack rm --yes "$stack") || true
  fi
  bash lab/vm/vm.sh destroy demo
  exit 0
fi

# The example as it is in the repository, run from a copy; it resolves pulumi-conntrack and
# @pulumi/pulumi from the repository's node_modules, as an installed program would from its own.
mkdir -p "$program"
cp examples/local-host/Pulumi.yaml examples/local-host/package.json examples/local-host/index.ts "$program/"
ln -sfn "$repo/node_modules" "$program/node_modules"
cd "$program"

# A stack left by a `down` that failed half way describes a VM that is gone (a new one has a new
# host key): forget it, so this run starts over instead of failing on it.
if ! bash "$repo/lab/vm/vm.sh" info demo >/dev/null 2>&1 && pulumi stack select "$stack" >/dev/null 2>&1; then
  echo "== forgetting the stack of an earlier demo whose VM is gone"
  pulumi stack rm --force --yes "$stack" >/dev/null
fi
host_json="$(bash "$repo/lab/vm/vm.sh" boot demo | tail -n 1)"
field() { node -e 'const h = JSON.parse(process.argv[1]); process.stdout.write(String(h[process.argv[2]]))' "$host_json" "$1"; }
pulumi stack select --create "$stack" >/dev/null
pulumi config set host "$(field host)"
pulumi config set port "$(field port)"
pulumi config set hostKey "$(field hostKey)"
pulumi config set --secret privateKey <"$(field privateKeyPath)"

echo "== pulumi preview --diff (nothing changes on the host yet)"
pulumi preview --diff --stack "$stack"
echo "== pulumi up"
pulumi up --yes --diff --stack "$stack"
echo "== on the VM now:"
bash "$repo/lab/vm/vm.sh" ssh demo "sysctl net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established; cat /sys/module/nf_conntrack/parameters/hashsize; ls /etc/sysctl.d /etc/modprobe.d /etc/udev/rules.d | grep pulumi-conntrack"
echo "Run it again: a second up changes nothing. Tear down: bash scripts/demo.sh down"
