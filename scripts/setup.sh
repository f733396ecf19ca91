#!/usr/bin/env bash
# Sets up everything the demo and the tests need on a fresh Debian 12 machine, and does nothing
# twice: Debian packages, Node 22+, npm packages, the compiled package, the real pulumi CLI
# (built from the Go module proxy once, cached), the Pulumi YAML language host (likewise), and the
# lab VM image (built once, cached).
# Usage: bash scripts/setup.sh        (prints what it does on stderr)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
log() { printf '[setup %s] %s\n' "$(date +%T)" "$*" >&2; }

packages=(qemu-system-x86 qemu-utils debootstrap openssh-server openssh-client iptables conntrack iproute2 kmod procps e2fsprogs util-linux ca-certificates sudo strace busybox)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "run as root (or install: ${missing[*]})" >&2; exit 1; }
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's openssh-server enables and starts the machine's own sshd on port 22 of every address.
  # The lab only needs the program (each namespaced host runs /usr/sbin/sshd with a config of its
  # own), so a service this run installed goes off again; one that was there before is left alone.
  if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
    log "stopping and disabling the ssh service openssh-server started (the lab runs its own sshds)"
    if [ -d /run/systemd/system ]; then
      systemctl disable --now --quiet ssh.service ssh.socket || log "warning: could not stop the ssh service: systemctl disable --now ssh.service ssh.socket"
    else
      { service ssh stop && update-rc.d ssh disable; } >/dev/null 2>&1 || log "warning: could not stop the ssh service: service ssh stop; update-rc.d ssh disable"
    fi
  fi
fi
command -v go >/dev/null || { echo "Go (1.24 or newer) is needed to build the pulumi CLI; this machine kind ships it in /usr/local/go" >&2; exit 1; }

node_bin="$(bash scripts/ensure-node.sh | tail -n 1)"
export PATH="$node_bin:$PATH"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci (Node $(node -v))"
  npm ci --no-audit --no-fund >&2
fi
# Programs in this repo import the package by name, as users do; the provider stub in state
# requires pulumi-conntrack/provider the same way.
ln -sfn .. node_modules/pulumi-conntrack
log "compiling TypeScript"
npx tsc -p tsconfig.json

log "pulumi CLI"
bash scripts/pulumi-cli.sh >/dev/null
log "Pulumi YAML language host (for the provider plugin's YAML tests)"
bash scripts/pulumi-yaml.sh >/dev/null
log "lab VM images (Debian 12 and its variants with ufw, and with Docker and fail2ban; 11 and 13 for the release matrix)"
bash lab/vm/build-image.sh >/dev/null
for release in bullseye trixie bookworm+ufw bookworm+neighbours; do PULUMI_CONNTRACK_DEBIAN_RELEASE=$release bash lab/vm/build-image.sh >/dev/null; done
log "ready"
