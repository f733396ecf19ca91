#!/usr/bin/env bash
# The README's main job: boot a disposable lab VM (Debian 12, real kernel, under qemu), then run
# `pulumi preview --diff` and `pulumi up` of examples/local-host (the root Pulumi.yaml) against it.
# `bash scripts/demo.sh down` destroys the stack and throws the VM away.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
[ "${1:-}" = down ] || bash scripts/setup.sh
source scripts/env.sh
state="$repo/.lab/demo"
mkdir -p "$state/backend"
export PULUMI_BACKEND_URL="file://$state/backend" PULUMI_HOME="$state/home"
stack=demo

if [ "${1:-}" = down ]; then
  pulumi stack select "$stack" >/dev/null 2>&1 && pulumi destroy --yes --stack "$stack" || true
  bash lab/vm/vm.sh destroy demo
  exit 0
fi

host_json="$(bash lab/vm/vm.sh boot demo | tail -n 1)"
field() { node -e 'const h = JSON.parse(process.argv[1]); process.stdout.write(String(h[process.argv[2]]))' "$host_json" "$1"; }
pulumi stack select --create "$stack" >/dev/null
pulumi config set host "$(field host)"
pulumi config set port "$(field port)"
pulumi config set hostKey "$(field hostKey)"
pulumi config set --secret privateKey -- "$(cat "$(field privateKeyPath)")"

echo "== pulumi preview --diff (nothing changes on the host yet)"
pulumi preview --diff --stack "$stack"
echo "== pulumi up"
pulumi up --yes --diff --stack "$stack"
echo "== on the VM now:"
bash lab/vm/vm.sh ssh demo "sysctl net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established; cat /sys/module/nf_conntrack/parameters/hashsize; ls /etc/sysctl.d /etc/modprobe.d /etc/udev/rules.d | grep pulumi-conntrack"
echo "Run it again: a second up changes nothing. Tear down: bash scripts/demo.sh down"
