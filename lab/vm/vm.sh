#!/usr/bin/env bash
# Lab VMs for pulumi-conntrack: Debian guests under qemu (software emulation), reached over SSH
# through a 127.0.0.1 port forward.
#
#   vm.sh boot NAME [RELEASE]  start (or resume) VM NAME, Debian 12 (bookworm) unless RELEASE says
#                         bullseye or trixie (bookworm+ufw: ufw instead of netfilter-persistent;
#                         bookworm+neighbours: with Docker and fail2ban);
#                         prints its host.json as the last stdout line
#   vm.sh reboot NAME     reboot the guest (clean filesystems, no unit stop actions), wait until
#                         SSH is back with the same host key
#   vm.sh poweroff NAME   clean shutdown; the disk, keys and port are kept for the next `boot`
#   vm.sh powercut NAME   SIGKILL its qemu, as a power cut: what the guest had not written to its
#                         disk is lost; the disk, keys and port are kept for the next `boot`
#   vm.sh destroy NAME    stop qemu (identified by our pid file only) and remove the run dir
#   vm.sh cleanup         destroy every VM under the lab dir (leftovers of a crashed run)
#   vm.sh ssh NAME CMD... run a command in the guest as root
#   vm.sh info NAME       print host.json of a booted VM
#   vm.sh list            names of the VMs that have a run dir
#
# State: ${PULUMI_CONNTRACK_LAB_DIR:-/tmp/pulumi-conntrack-lab}/vm/<name>/ (disk overlay, host key,
# port, known_hosts, pid file, serial console log, host.json); the lab's client key is
# ${LAB_DIR}/client/id_ed25519 (shared with the other parts of the lab).
# Env: PULUMI_CONNTRACK_VM_TIMEOUT (s, default 180), PULUMI_CONNTRACK_VM_MEMORY (MiB, default 512),
#      PULUMI_CONNTRACK_MAX_VMS (default 2: more than that starves a 2-core machine).
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
LAB_DIR=$(realpath -m "${PULUMI_CONNTRACK_LAB_DIR:-/tmp/pulumi-conntrack-lab}") # absolute: the pid check matches it
VM_ROOT=$LAB_DIR/vm
CLIENT_KEY=$LAB_DIR/client/id_ed25519
TIMEOUT=${PULUMI_CONNTRACK_VM_TIMEOUT:-180}
MEMORY=${PULUMI_CONNTRACK_VM_MEMORY:-512}
MAX_VMS=${PULUMI_CONNTRACK_MAX_VMS:-2}
QEMU=${PULUMI_CONNTRACK_QEMU:-qemu-system-x86_64}

log() { echo "vm: $*" >&2; }
die() { echo "vm: error: $*" >&2; exit 1; }

check_name() {
  [[ ${1:-} =~ ^[a-z0-9-]{1,32}$ ]] || die "bad VM name '${1:-}' (must match ^[a-z0-9-]{1,32}\$)"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
since() { # seconds since now_ms value $1, one decimal
  local ms=$(($(now_ms) - $1))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

json_str() { # JSON string literal of $1
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# --- process identification: only our own pid files, and only if the pid is ours -----------------
# Prints the qemu pid of run dir $1 if it is alive and one of its arguments is that run dir's pid
# file (`-pidfile DIR/qemu.pid`), whole: a lab directory whose path ends in this one's
# (/x/tmp/lab and /tmp/lab) holds VMs of its own, never ours.
vm_pid() {
  local dir=$1 pid
  [[ -f $dir/qemu.pid ]] || return 1
  pid=$(tr -dc 0-9 <"$dir/qemu.pid")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$dir/qemu.pid" || return 1
  echo "$pid"
}

running_count() {
  local n=0 d
  for d in "$VM_ROOT"/*/; do
    [[ -d $d ]] || continue
    if vm_pid "${d%/}" >/dev/null; then n=$((n + 1)); fi
  done
  echo "$n"
}

# --- SSH -------------------------------------------------------------------------------------------
ssh_opts() { # $1 = run dir
  local dir=$1
  SSH_OPTS=(-F none -i "$CLIENT_KEY" -p "$(cat "$dir/port")"
    -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$dir/known_hosts" -o GlobalKnownHostsFile=/dev/null
    -o HostKeyAlgorithms=ssh-ed25519 -o CheckHostIP=no -o UpdateHostKeys=no
    -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=6 -o LogLevel=ERROR)
}

guest() { # $1 = run dir, rest = remote command
  local dir=$1
  shift
  ssh_opts "$dir"
  ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@"
}

console_tail() {
  local dir=$1
  if [[ -f $dir/console.log ]]; then
    echo "--- last lines of $dir/console.log ---" >&2
    tail -n 30 "$dir/console.log" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' >&2
    echo "---" >&2
  fi
}

# Wait until the guest answers SSH with the expected host key; with $2 set, also until its boot id
# differs from $2 (i.e. it has rebooted). Prints the boot id.
wait_ssh() {
  local dir=$1 not_boot=${2:-} deadline out
  deadline=$(($(date +%s) + TIMEOUT))
  ssh_opts "$dir"
  while :; do
    if ! vm_pid "$dir" >/dev/null; then
      console_tail "$dir"
      die "qemu of $(basename "$dir") exited while waiting for SSH"
    fi
    if out=$(timeout 40 ssh "${SSH_OPTS[@]}" root@127.0.0.1 cat /proc/sys/kernel/random/boot_id 2>"$dir/ssh-wait.err") \
      && [[ -n $out && $out != "$not_boot" ]]; then
      echo "$out"
      return 0
    fi
    if grep -q 'HOST IDENTIFICATION HAS CHANGED\|Host key verification failed' "$dir/ssh-wait.err" 2>/dev/null; then
      console_tail "$dir"
      die "$(basename "$dir"): the guest answered SSH with an unexpected host key: $(cat "$dir/ssh-wait.err")"
    fi
    if (($(date +%s) >= deadline)); then
      console_tail "$dir"
      die "$(basename "$dir"): no SSH on 127.0.0.1:$(cat "$dir/port") after ${TIMEOUT}s (last ssh error: $(tail -n 1 "$dir/ssh-wait.err" 2>/dev/null)); qemu is left running for inspection: vm.sh destroy $(basename "$dir")"
    fi
    sleep 1
  done
}

port_free() { # nothing listens on 127.0.0.1:$1 (qemu's bind is the final word; boot retries)
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000)) # below the kernel's ephemeral range (32768-60999)
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  die "no free TCP port found on 127.0.0.1"
}

write_host_json() {
  local dir=$1 name=$2 port hostkey
  port=$(cat "$dir/port")
  hostkey=$(cut -d' ' -f1,2 "$dir/host_ed25519_key.pub")
  printf '[127.0.0.1]:%s %s\n' "$port" "$hostkey" >"$dir/known_hosts"
  printf '{"name":%s,"host":"127.0.0.1","port":%s,"user":"root","privateKeyPath":%s,"hostKey":%s,"knownHostsPath":%s,"httpPort":%s}\n' \
    "$(json_str "$name")" "$port" "$(json_str "$CLIENT_KEY")" "$(json_str "$hostkey")" \
    "$(json_str "$dir/known_hosts")" "$(cat "$dir/port80" 2>/dev/null || echo null)" >"$dir/host.json.new"
  mv -f "$dir/host.json.new" "$dir/host.json"
}

ensure_client_key() {
  mkdir -p "$LAB_DIR/client"
  chmod 700 "$LAB_DIR/client"
  (
    flock 8
    if [[ ! -s $CLIENT_KEY ]]; then
      rm -f "$CLIENT_KEY" "$CLIENT_KEY.pub"
      ssh-keygen -q -t ed25519 -N '' -C pulumi-conntrack-lab -f "$CLIENT_KEY"
    fi
    [[ -s $CLIENT_KEY.pub ]] || ssh-keygen -y -f "$CLIENT_KEY" >"$CLIENT_KEY.pub"
  ) 8>"$LAB_DIR/client/.lock"
}

# Serialise operations on one VM (the lock lives outside the run dir: destroy removes it). qemu must
# not inherit fd 7 (it would hold the lock for its whole life): see `7>&-` where it starts.
# $2 = "force": after 30 s go on without the lock (destroy/cleanup must not hang on a stuck holder).
lock_vm() {
  mkdir -p "$VM_ROOT/.locks"
  exec 7>"$VM_ROOT/.locks/$1"
  if [[ ${2:-} == force ]]; then
    flock -w 30 7 || log "$1: another vm.sh holds the lock of this VM for 30s; going on without it"
  else
    flock -w 900 7 || die "$1: another vm.sh has held the lock of this VM for 15 min"
  fi
}

# --- commands --------------------------------------------------------------------------------------
cmd_boot() {
  local name=$1 release=${2:-bookworm} dir image machine_id start attempt err pid
  check_name "$name"
  [[ $release =~ ^(bullseye|bookworm|trixie)(\+(ufw|neighbours))?$ ]] || die "bad release '$release' (bullseye, bookworm or trixie, optionally +ufw or +neighbours: lab/vm/build-image.sh)"
  dir=$VM_ROOT/$name
  mkdir -p "$dir"
  lock_vm "$name"
  ensure_client_key

  if vm_pid "$dir" >/dev/null; then
    log "$name is already running; waiting for SSH"
    wait_ssh "$dir" >/dev/null
    cat "$dir/host.json"
    return 0
  fi
  rm -f "$dir/qemu.pid"

  # The image: the one this VM's disk was made from if it still exists (its kernel matches the
  # modules on that disk), else the current recipe (and a fresh disk).
  if [[ -f $dir/image-dir && -f $(cat "$dir/image-dir")/complete && -f $dir/disk.qcow2 ]] \
    && grep -qx "release=$release" "$(cat "$dir/image-dir")/manifest"; then
    image=$(cat "$dir/image-dir")
  else
    image=$(PULUMI_CONNTRACK_DEBIAN_RELEASE=$release "$HERE/build-image.sh" | tail -n 1)
    [[ -f $image/complete ]] || die "build-image.sh returned no image dir"
    if [[ -f $dir/disk.qcow2 ]]; then
      log "$name: the image of its disk is gone; starting from a fresh disk"
      rm -f "$dir/disk.qcow2"
    fi
    echo "$image" >"$dir/image-dir"
  fi
  if [[ ! -f $dir/disk.qcow2 ]]; then
    qemu-img create -q -f qcow2 -F raw -b "$image/rootfs.img" "$dir/disk.qcow2.new" >&2
    mv -f "$dir/disk.qcow2.new" "$dir/disk.qcow2"
  fi
  if [[ ! -s $dir/host_ed25519_key || ! -s $dir/host_ed25519_key.pub ]]; then
    rm -f "$dir/host_ed25519_key" "$dir/host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/host_ed25519_key"
  fi
  [[ -s $dir/machine-id ]] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/machine-id"
  machine_id=$(cat "$dir/machine-id")

  # Count and start under one machine-wide lock, so parallel boots can't exceed MAX_VMS together.
  exec 6>"$VM_ROOT/.locks/.start"
  flock -w 900 6 || die "could not take $VM_ROOT/.locks/.start"
  local running
  running=$(running_count)
  ((running < MAX_VMS)) || die "$running lab VMs are running already (PULUMI_CONNTRACK_MAX_VMS=$MAX_VMS); destroy or power off one first"

  start=$(now_ms)
  for attempt in 1 2 3 4 5; do
    if [[ ! -s $dir/port ]] || ! port_free "$(cat "$dir/port")"; then
      pick_port >"$dir/port"
    fi
    # The guest's port 80 too, for tests that load a server on it from outside the VM.
    while [[ ! -s $dir/port80 ]] || ! port_free "$(cat "$dir/port80")" || [[ $(cat "$dir/port80") == $(cat "$dir/port") ]]; do
      pick_port >"$dir/port80"
    done
    write_host_json "$dir" "$name"
    # No descriptor of ours reaches qemu, which outlives this script: an inherited lock (flock(1)
    # passes its fd on) would be held for as long as the VM runs.
    # restrict=on: the guest reaches nothing outside (its DHCP still answers; DNS does not), since
    # nothing in the lab needs it to; the two forwarded ports are how the machine reaches it.
    [[ -f $dir/console.log ]] && mv -f "$dir/console.log" "$dir/console.log.1"
    if err=$("$QEMU" \
      -name "pulumi-conntrack-$name,process=pulumi-conntrack-$name" \
      -accel tcg,tb-size=128 -cpu max -m "$MEMORY" -smp 1 \
      -nodefaults -nographic -monitor none -parallel none \
      -serial "file:$dir/console.log" \
      -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
      -append "$(cat "$image/cmdline") systemd.hostname=$name systemd.machine_id=$machine_id" \
      -drive "file=$dir/disk.qcow2,format=qcow2,if=virtio,cache=unsafe,discard=unmap" \
      -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$(cat "$dir/port")-:22,hostfwd=tcp:127.0.0.1:$(cat "$dir/port80")-:80" \
      -device virtio-net-pci,netdev=net0,romfile= \
      -device virtio-rng-pci \
      -fw_cfg "name=opt/pulumi-conntrack/authorized_key,file=$CLIENT_KEY.pub" \
      -fw_cfg "name=opt/pulumi-conntrack/host_key,file=$dir/host_ed25519_key" \
      -pidfile "$dir/qemu.pid" -daemonize 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-); then
      break
    fi
    if grep -qi 'host forwarding\|address already in use' <<<"$err" && ((attempt < 5)); then
      log "$name: port $(cat "$dir/port") was taken; retrying ($err)"
      rm -f "$dir/port" "$dir/port80"
      continue
    fi
    die "$name: qemu failed to start: $err"
  done
  pid=$(vm_pid "$dir") || die "$name: qemu started but its pid file $dir/qemu.pid names no process of this VM"
  exec 6>&- # the new qemu counts from now on
  log "$name: qemu pid $pid, ssh on 127.0.0.1:$(cat "$dir/port"), console $dir/console.log"
  wait_ssh "$dir" >/dev/null
  log "$name: SSH up after $(since "$start")s"
  cat "$dir/host.json"
}

need_running() { # $1 = name; sets DIR, PID
  check_name "$1"
  DIR=$VM_ROOT/$1
  [[ -d $DIR ]] || die "no VM named $1 (run: vm.sh boot $1)"
  PID=$(vm_pid "$DIR") || die "VM $1 is not running"
}

cmd_reboot() {
  local name=$1 boot_id start
  need_running "$name"
  lock_vm "$name"
  boot_id=$(guest "$DIR" cat /proc/sys/kernel/random/boot_id) || die "$name: SSH does not answer"
  start=$(now_ms)
  # --force: no unit's stop actions, which under emulation take longer than the boot that follows,
  # and which none of the host's persisted state depends on; processes still end and every
  # filesystem is unmounted (or remounted read-only) and synced first, as in any clean reboot
  # (a power cut is `powercut`).
  guest "$DIR" systemctl reboot --force >/dev/null 2>&1 || true
  wait_ssh "$DIR" "$boot_id" >/dev/null # same known_hosts: the same host key, or it fails
  log "$name: rebooted in $(since "$start")s"
  cat "$DIR/host.json"
}

# Wait up to $2 seconds for process $1 to exit.
wait_exit() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    [[ -d /proc/$pid ]] || return 0
    # a zombie of ours doesn't count (qemu is daemonized: not our child; belt and braces)
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
    sleep 0.1
  done
  return 1
}

cmd_poweroff() {
  local name=$1
  check_name "$name"
  DIR=$VM_ROOT/$name
  [[ -d $DIR ]] || die "no VM named $name"
  lock_vm "$name"
  PID=$(vm_pid "$DIR") || { log "$name is not running"; rm -f "$DIR/qemu.pid"; return 0; }
  guest "$DIR" systemctl poweroff >/dev/null 2>&1 || true
  if ! wait_exit "$PID" 120; then
    log "$name: no clean shutdown after 120s; stopping qemu"
    stop_pid "$DIR" "$PID"
  fi
  rm -f "$DIR/qemu.pid"
  log "$name: powered off (disk kept: $DIR/disk.qcow2)"
}

# No shutdown, no flush: the guest's page cache dies with qemu (its disk is cache=unsafe, so what
# qemu had written reaches the overlay file, as what a disk had written stays on it).
cmd_powercut() {
  local name=$1
  need_running "$name"
  lock_vm "$name"
  [[ $(vm_pid "$DIR" || true) == "$PID" ]] || die "$name: qemu pid $PID changed under us"
  kill -KILL "$PID"
  wait_exit "$PID" 10 || die "qemu pid $PID of $name does not die"
  rm -f "$DIR/qemu.pid"
  log "$name: power cut (qemu pid $PID killed; disk kept: $DIR/disk.qcow2)"
}

stop_pid() { # $1 = run dir, $2 = pid, re-verified right before each signal
  local dir=$1 pid=$2
  [[ $(vm_pid "$dir" || true) == "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait_exit "$pid" 10 && return 0
  [[ $(vm_pid "$dir" || true) == "$pid" ]] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait_exit "$pid" 10 || die "qemu pid $pid of $dir does not die"
}

destroy_dir() { # $1 = run dir
  local dir=$1 pid
  if pid=$(vm_pid "$dir"); then
    log "$(basename "$dir"): stopping qemu pid $pid"
    stop_pid "$dir" "$pid"
  elif [[ -f $dir/qemu.pid ]]; then
    log "$(basename "$dir"): pid file names no process of this VM; nothing to kill"
  fi
  rm -rf "$dir"
}

cmd_destroy() {
  local name=$1
  check_name "$name"
  lock_vm "$name" force
  destroy_dir "$VM_ROOT/$name"
  log "$name: destroyed"
}

cmd_cleanup() {
  local d name
  [[ -d $VM_ROOT ]] || return 0
  for d in "$VM_ROOT"/*/; do
    [[ -d $d ]] || continue
    name=$(basename "$d")
    [[ $name =~ ^[a-z0-9-]{1,32}$ ]] || { log "skipping $d (not a lab VM name)"; continue; }
    (lock_vm "$name" force; destroy_dir "$VM_ROOT/$name"; log "$name: destroyed")
  done
}

cmd_ssh() {
  local name=$1
  shift
  need_running "$name"
  ssh_opts "$DIR"
  exec ssh "${SSH_OPTS[@]}" root@127.0.0.1 "$@"
}

cmd_info() {
  need_running "$1"
  cat "$DIR/host.json"
}

cmd_list() {
  local d
  for d in "$VM_ROOT"/*/; do
    [[ -d $d ]] || continue
    if vm_pid "${d%/}" >/dev/null; then echo "$(basename "$d") running"; else echo "$(basename "$d") stopped"; fi
  done
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -n 's/^# \{0,1\}//p' >&2
  exit 2
}

cmd=${1:-}
shift || true
case $cmd in
  boot)
    [[ $# -eq 1 || $# -eq 2 ]] || usage
    cmd_boot "$@"
    ;;
  reboot | poweroff | powercut | destroy | info)
    [[ $# -eq 1 ]] || usage
    "cmd_$cmd" "$1"
    ;;
  ssh)
    [[ $# -ge 2 ]] || usage
    cmd_ssh "$@"
    ;;
  cleanup | list)
    [[ $# -eq 0 ]] || usage
    "cmd_$cmd"
    ;;
  *) usage ;;
esac
