#!/usr/bin/env bash
# lab/netns/hosts.sh — cheap lab hosts for pulumi-conntrack: one network namespace per host, each
# with its own sshd, /etc and /var/lib (overlays: the ledger lives there), /run, /root and /tmp.
#
#   hosts.sh up N [PREFIX]     create hosts PREFIX-h1..PREFIX-hN (N 1..500, PREFIX default "pcl");
#                              prints the path of hosts.json as the last stdout line
#   hosts.sh down [PREFIX]     stop and remove them (also cleans up after a crashed run)
#   hosts.sh down --all        the same for every prefix this lab directory left behind
#   hosts.sh exec NAME CMD...  run CMD on host NAME over ssh (ssh joins CMD's words with spaces)
#
# State lives in ${PULUMI_CONNTRACK_LAB_DIR:-/tmp/pulumi-conntrack-lab}/netns/PREFIX/. The client
# key ${LAB_DIR}/client/id_ed25519 is shared with the VM half of the lab.
# PULUMI_CONNTRACK_NETNS_SESSION_PATH, when set for `up`, is the PATH of the hosts' SSH sessions
# (sshd's SetEnv): the commands our scripts run there, e.g. a directory of busybox applets first.
# A host sees its own /tmp, /root, /run and /etc: make such a directory over SSH once it is up.
#
# What this script owns, and so the only things it ever stops or deletes: what this lab directory
# made. Another lab directory's hosts (another checkout's test run, a bench run) are never touched,
# even under the same PREFIX: `up` then fails, naming the lab directory that holds them.
#   - root-namespace veths named PREFIX-h<i> whose alias is "pulumi-conntrack-lab:LAB_DIR" (the
#     marker: it names the lab directory);
#   - network namespaces named PREFIX-h<i> whose veth carries that marker; and, while this lab's
#     state knows the host, those that are empty (only lo, no processes: a crash between "netns
#     add" and "link add") or whose veth has the marker of hosts.sh before lab directories
#     (alias pulumi-conntrack-lab alone);
#   - processes whose argv holds one of its sshd config paths (PREFIX dir/h<i>/sshd/sshd_config),
#     and processes inside the namespaces above (the sshds' session children).
# One lock for every lab directory (/run/lock/pulumi-conntrack-lab-netns.lock): namespace names,
# veths and addresses are the machine's, so no lab sees another one's hosts half made.
# Addresses: the i-th /30 of the block allocated in 10.213.0.0/16 (host side .1, namespace side .2).
# A first prefix gets blocks from 0 (10.213.0.0/30 for h1); a second prefix that is up at the same
# time, in this lab directory or another, gets the next free blocks. Namespaces get no default
# route: they reach only their /30.
set -euo pipefail

# ip, sshd, mount... live in sbin, which a test runner's PATH may lack
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
LAB_DIR="${PULUMI_CONNTRACK_LAB_DIR:-/tmp/pulumi-conntrack-lab}" # NS_DIR, CLIENT_KEY, MARKER below
LAB_NAME="pulumi-conntrack-lab" # the client key's comment; every lab's veth marker begins with it
LOCK=/run/lock/pulumi-conntrack-lab-netns.lock
# MAC prefixes of the veths' two ends: how a hosts.sh from before lab directory markers (still
# run by older checkouts on the same machine) tells a lab's addresses in 10.213.0.0/16 from a
# foreign route. Nothing here reads them.
MAC_HOST="02:70:63:6c"
MAC_NS="02:70:63:6d"
NET="10.213"
BLOCKS=16384 # /30 blocks in 10.213.0.0/16
MAX_HOSTS=500
PROBE_PARALLEL="${PULUMI_CONNTRACK_NETNS_PROBE_PARALLEL:-16}"
READY_TIMEOUT="${PULUMI_CONNTRACK_NETNS_READY_TIMEOUT:-60}"
SESSION_PATH="${PULUMI_CONNTRACK_NETNS_SESSION_PATH:-}"

log() { printf 'hosts.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "$LAB_DIR" in
/*) ;;
*) die "PULUMI_CONNTRACK_LAB_DIR must be an absolute path (got '$LAB_DIR')" ;;
esac
# One lab directory has one spelling (as in vm.sh), so its marker is one string: /tmp/x/ is /tmp/x.
LAB_DIR="$(realpath -m -- "$LAB_DIR")"
# The path ends up in sshd_config, known_hosts references and JSON: keep it to plain characters.
[[ "$LAB_DIR" =~ ^/[A-Za-z0-9._/+@,:=-]*$ ]] ||
  die "PULUMI_CONNTRACK_LAB_DIR may only contain letters, digits and ._/+@,:=- (got '$LAB_DIR')"
NS_DIR="$LAB_DIR/netns"
CLIENT_KEY="$LAB_DIR/client/id_ed25519"
# The alias of every veth this lab directory makes: what tells its hosts from another lab's.
MARKER="$LAB_NAME:$LAB_DIR"
((${#MARKER} <= 255)) || die "PULUMI_CONNTRACK_LAB_DIR is too long: the veths' alias names it, in at most 255 bytes"
# It ends up in sshd_config as one word: absolute directories of plain characters.
[[ -z "$SESSION_PATH" || "$SESSION_PATH" =~ ^/[A-Za-z0-9._/+@,=-]*(:/[A-Za-z0-9._/+@,=-]*)*$ ]] ||
  die "PULUMI_CONNTRACK_NETNS_SESSION_PATH must be absolute directories of letters, digits and ._/+@,=- joined by : (got '$SESSION_PATH')"

valid_prefix() {
  [[ "$1" =~ ^[a-z0-9]{1,8}$ ]] || die "PREFIX must match ^[a-z0-9]{1,8}\$ (got '$1')"
}

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------------------------
# Locking: one lab operation at a time, across lab directories (address allocation, create,
# delete): a lab then never meets another one's host half made (a namespace without its veth yet).
take_lock() {
  mkdir -p "$NS_DIR" "${LOCK%/*}"
  exec 9>"$LOCK"
  flock -w 300 9 || die "timed out waiting for $LOCK (another hosts.sh holds it)"
}

# The lab's client key, shared with lab/vm: the same lock file (client/.lock) guards its creation.
ensure_client_key() {
  mkdir -p "$LAB_DIR/client"
  chmod 700 "$LAB_DIR/client"
  (
    flock -w 60 8 || die "timed out waiting for $LAB_DIR/client/.lock"
    if [[ ! -s "$CLIENT_KEY" ]]; then
      rm -f "$CLIENT_KEY" "$CLIENT_KEY.pub"
      ssh-keygen -q -t ed25519 -N '' -C "$LAB_NAME" -f "$CLIENT_KEY"
    fi
    [[ -s "$CLIENT_KEY.pub" ]] || ssh-keygen -y -f "$CLIENT_KEY" >"$CLIENT_KEY.pub"
  ) 8>"$LAB_DIR/client/.lock"
  CLIENT_PUB="$(ssh-keygen -y -f "$CLIENT_KEY")" || die "cannot read the client key $CLIENT_KEY"
}

# ---------------------------------------------------------------------------------------------
# Discovery of what we own.

# Root-namespace veths named like a lab host and carrying a lab's marker, whichever lab directory
# made them: "name prefix labdir" lines ("-" for the marker of hosts.sh before lab directories).
lab_root_links() {
  ip -o link show type veth 2>/dev/null | awk -v lab="$LAB_NAME" '{
    name = $2; sub(/:$/, "", name); sub(/@.*/, "", name)
    alias = ""; for (i = 3; i < NF; i++) if ($i == "alias") { alias = $(i + 1); break }
    if (name !~ /^[a-z0-9]+-h[0-9]+$/ || length(name) > 13) next
    if (alias == lab) dir = "-"
    else if (index(alias, lab ":") == 1) dir = substr(alias, length(lab) + 2)
    else next
    p = name; sub(/-h[0-9]+$/, "", p); print name, p, dir
  }'
}

# The veths of this lab directory: "name prefix" lines.
our_root_links() {
  lab_root_links | awk -v dir="$LAB_DIR" '$3 == dir { print $1, $2 }'
}

# Who holds a host name that isn't ours, for a message: the lab directory its veth names.
holder_of() { # holder_of NAME
  local alias
  alias="$(cat "/sys/class/net/$1/ifalias" 2>/dev/null)" || alias=""
  case "$alias" in
  "$LAB_NAME:"*) echo "the lab in ${alias#"$LAB_NAME:"}" ;;
  "$LAB_NAME") echo "a host of a hosts.sh from before lab directory markers: ip netns pids $1 | xargs -r kill; ip netns del $1" ;;
  *) echo "nothing that carries a lab's marker (no veth of that name has one)" ;;
  esac
}

# ERE_Q := the path $1 quoted for a bash =~ regex (LAB_DIR's allowed characters: only . and +
# are special); no subshell, this runs once per candidate process
ere_quote() {
  ERE_Q="${1//./\\.}"
  ERE_Q="${ERE_Q//+/\\+}"
}

# PID is one of our sshds for a config path matching the regex $2: an sshd started with
# "-f CFG", the title a running sshd gives itself ("sshd: /usr/sbin/sshd -D -f CFG -E LOG
# [listener] ...", one argv string), or the starter chain (setsid ... sh -c INNER pcl-lab-host CFG).
pid_matches() {
  local pid="$1" re="$2" k
  local -a argv=()
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  mapfile -d "" argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
  ((${#argv[@]} > 0)) || return 1
  [[ "${argv[0]}" =~ ^sshd:\ .*\ -f\ $re(\ |$) ]] && return 0
  for ((k = 1; k < ${#argv[@]}; k++)); do
    if [[ "${argv[k]}" =~ ^$re$ ]]; then
      [[ "${argv[k - 1]}" == pcl-lab-host ]] && return 0
      [[ "${argv[k - 1]}" == -f && "${argv[0]}" == */sshd ]] && return 0
    fi
  done
  return 1
}

# "pid inode" for every process (one stat call)
proc_netns_map() {
  stat -c '%N' /proc/[0-9]*/ns/net 2>/dev/null |
    sed -n "s|^'\{0,1\}/proc/\([0-9]*\)/ns/net'\{0,1\} -> 'net:\[\([0-9]*\)\]'\$|\1 \2|p"
}

# ---------------------------------------------------------------------------------------------
# down

# running, i.e. neither gone nor a zombie (the init of some sandboxes reaps orphans ~1.5 s late)
is_running() {
  local st
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  st="${st##*) }"
  [[ "${st%% *}" != Z ]]
}

kill_pids() { # kill_pids SIG pid...
  local sig="$1"
  shift
  (($# == 0)) && return 0
  kill "-$sig" "$@" 2>/dev/null || true
}

# Everything for one prefix; the lock must be held.
down_prefix() {
  local p="$1" pdir="$NS_DIR/$1" t0 t1 t2 t3 t4 pf pid hd n i ino re_any
  t0="$(now_ms)"
  shopt -s nullglob
  ere_quote "$pdir"
  re_any="$ERE_Q/h[0-9]+/sshd/sshd_config"

  # 1. our sshds: pid files first (verified against argv), then a scan for our config paths
  #    (covers missing pid files and sshds whose namespace name is already gone).
  local -A pids=()
  for pf in "$pdir"/h*/sshd.pid; do
    pid="$(<"$pf")" || continue
    hd="${pf%/sshd.pid}"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    ere_quote "$hd/sshd/sshd_config"
    if pid_matches "$pid" "$ERE_Q"; then pids[$pid]=1; fi
  done
  local f
  while IFS= read -r f; do
    pid="${f#/proc/}"
    pid="${pid%/cmdline}"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    ((pid == $$ || pid == BASHPID)) && continue
    if pid_matches "$pid" "$re_any"; then pids[$pid]=1; fi
  done < <(grep -lsF -- "$pdir/h" /proc/[0-9]*/cmdline 2>/dev/null || true)

  t1="$(now_ms)"
  # 2. our namespaces, and every process inside them (the sshds' session children, commands a
  #    test started there)
  local -a nss=() candidates=()
  local -A maybe=() ino_owned=() ns_ino=() our_links=()
  while read -r n _; do
    [[ "$n" =~ ^${p}-h[0-9]{1,3}$ ]] && candidates+=("$n")
  done < <(ip netns list 2>/dev/null || true)
  while read -r n _; do our_links[$n]=1; done < <(our_root_links)
  for n in "${candidates[@]}"; do
    i="${n##*-h}"
    if [[ -n "${our_links[$n]:-}" ]]; then
      nss+=("$n") # its veth (same name) carries our marker
    elif [[ -d "$pdir/h$i" && "$(cat "/sys/class/net/$n/ifalias" 2>/dev/null)" == "$LAB_NAME" ]]; then
      nss+=("$n") # made under our state by a hosts.sh from before lab directory markers
    elif [[ -d "$pdir/h$i" && "$(ip -n "$n" -o link show 2>/dev/null | grep -vc ': lo: ')" == 0 ]]; then
      nss+=("$n") # empty (crash between "netns add" and "link add"): ours if no process is in it
      maybe[$n]=1
    else
      log "leaving namespace $n alone: it belongs to $(holder_of "$n")"
    fi
  done
  if ((${#nss[@]} > 0)); then
    while read -r f ino; do ns_ino[${f#/run/netns/}]="$ino"; done \
      < <(stat -L -c '%n %i' "${nss[@]/#//run/netns/}" 2>/dev/null || true)
    local -A ino_pids=()
    while read -r pid ino; do ino_pids[$ino]+="$pid "; done < <(proc_netns_map)
    local -a keep=()
    for n in "${nss[@]}"; do
      ino="${ns_ino[$n]:-}"
      [[ -n "$ino" ]] || continue
      if [[ -n "${maybe[$n]:-}" && -n "${ino_pids[$ino]:-}" ]]; then
        log "leaving namespace $n alone: it has no veth of this lab, and processes run in it"
        continue
      fi
      keep+=("$n")
      ino_owned[$ino]=1
      for pid in ${ino_pids[$ino]:-}; do pids[$pid]=1; done
    done
    nss=("${keep[@]}")
  fi

  t2="$(now_ms)"
  # 3. stop them: TERM, wait, then KILL whatever is still ours
  local -a list=("${!pids[@]}")
  if ((${#list[@]} > 0)); then
    kill_pids TERM "${list[@]}"
    local deadline=$((SECONDS + 5)) alive
    while :; do
      alive=()
      for pid in "${list[@]}"; do is_running "$pid" && alive+=("$pid"); done
      ((${#alive[@]} == 0 || SECONDS >= deadline)) && break
      sleep 0.05
    done
    if ((${#alive[@]} > 0)); then
      local -a again=()
      local cur
      for pid in "${alive[@]}"; do
        cur="$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null || true)"
        if pid_matches "$pid" "$re_any" || [[ -n "$cur" && -n "${ino_owned[$cur]:-}" ]]; then
          again+=("$pid")
        fi
      done
      kill_pids KILL "${again[@]}"
      for pid in "${again[@]}"; do
        while is_running "$pid" && ((SECONDS < deadline + 5)); do sleep 0.05; done
      done
    fi
  fi

  t3="$(now_ms)"
  # 4. namespaces and veths. "netns del" only drops the name; with no process left inside, the
  #    kernel destroys the namespace and both ends of its veth in the background, batched: for
  #    100 hosts ~0.1 s, against ~1.9 s for "link del" of each veth. Wait for our veths to go,
  #    then delete stragglers (a veth whose namespace is held by something else) explicitly.
  local batch=""
  for n in "${nss[@]}"; do batch+="netns del $n"$'\n'; done
  [[ -z "$batch" ]] || printf '%s' "$batch" | ip -force -batch - >/dev/null 2>&1 || true
  local links
  deadline=$((SECONDS + 10))
  while :; do
    links="$(our_root_links | awk -v p="$p" '$2 == p { print $1 }')"
    [[ -z "$links" ]] && break
    if ((SECONDS >= deadline)) || [[ -z "$batch" ]]; then
      # shellcheck disable=SC2086 # one name per word
      printf 'link del dev %s\n' $links | ip -force -batch - >/dev/null 2>&1 || true
      break
    fi
    sleep 0.05
  done

  # 5. mounts: the state tmpfs at $pdir (the hosts' overlays live in their private mount
  #    namespaces and died with their processes)
  local mp
  while read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "cannot unmount $mp"
  done < <(awk -v d="$pdir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)

  t4="$(now_ms)"
  # 6. state
  rm -rf -- "$pdir"

  local leftover note=""
  leftover="$( (ip netns list 2>/dev/null || true) | awk -v re="^${p}-h[0-9]+\$" '$1 ~ re' | wc -l)"
  ((leftover == 0)) || note=" ($leftover namespaces named like ours remain)"
  log "down $p: stopped ${#list[@]} processes, removed ${#nss[@]} namespaces in $(($(now_ms) - t0)) ms (find $((t2 - t0)), stop $((t3 - t2)), delete $((t4 - t3)))$note"
}

all_prefixes() {
  local d
  {
    for d in "$NS_DIR"/*/; do
      d="${d%/}"
      d="${d##*/}"
      [[ "$d" =~ ^[a-z0-9]{1,8}$ ]] && echo "$d"
    done
    # Only what this lab directory knows (its state, its sshds' argv, its veths' marker): another
    # lab's hosts are not ours to stop.
    ere_quote "$NS_DIR"
    grep -ahoE -- "$ERE_Q/[a-z0-9]{1,8}/h[0-9]+/sshd/sshd_config" \
      /proc/[0-9]*/cmdline 2>/dev/null | sed "s|^$NS_DIR/||; s|/.*||" || true
    our_root_links | awk '{ print $2 }'
  } | sort -u
}

cmd_down() {
  local p="${1:-pcl}"
  take_lock
  shopt -s nullglob
  if [[ "$p" == --all ]]; then
    local q
    for q in $(all_prefixes); do down_prefix "$q"; done
  else
    valid_prefix "$p"
    down_prefix "$p"
  fi
}

# ---------------------------------------------------------------------------------------------
# up

# Blocks used in 10.213.0.0/16 by the links of any lab directory (the range is the machine's);
# dies when something else routes into it.
used_blocks() {
  local ours
  ours=" $(lab_root_links | awk '{ printf "%s ", $1 }')"
  ip -4 -o route show table all 2>/dev/null | awk -v ours="$ours" '
    function ip2n(s,   a, n) { n = split(s, a, "."); while (n < 4) a[++n] = 0
      return ((a[1] * 256 + a[2]) * 256 + a[3]) * 256 + a[4] }
    BEGIN { base = ip2n("10.213.0.0") }
    {
      i = 1
      if ($1 ~ /^(local|broadcast|unicast|unreachable|blackhole|prohibit|throw|anycast|multicast|nat)$/) i = 2
      dst = $i
      if (dst == "default") next
      n = split(dst, p, "/"); len = (n == 2) ? p[2] + 0 : 32
      net = ip2n(p[1]); L = (len < 16) ? len : 16; div = 2 ^ (32 - L)
      if (int(net / div) != int(base / div)) next
      dev = ""; for (j = i + 1; j < NF; j++) if ($j == "dev") dev = $(j + 1)
      if (dev == "" || len < 16 || index(ours, " " dev " ") == 0) { print "FOREIGN " $0; next }
      start = net - base; size = 2 ^ (32 - len)
      print "USED " int(start / 4) " " int((start + size - 1) / 4)
    }'
}

allocate() { # allocate N PREFIX -> prints the first block index
  local n="$1" p="$2" kind a b f q base count i
  local -A used=()
  while read -r kind a b; do
    if [[ "$kind" == FOREIGN ]]; then
      die "10.213.0.0/16 is already routed by something this lab doesn't own: '$a $b'. The netns lab needs that range; remove the route or run the lab elsewhere."
    fi
    for ((i = a; i <= b; i++)); do used[$i]=1; done
  done < <(used_blocks)
  for f in "$NS_DIR"/*/alloc; do
    q="${f%/alloc}"
    q="${q##*/}"
    [[ "$q" == "$p" ]] && continue
    read -r base count <"$f" || continue
    for ((i = base; i < base + count; i++)); do used[$i]=1; done
  done
  for ((base = 0; base + n <= BLOCKS; base++)); do
    for ((i = base; i < base + n; i++)); do
      [[ -n "${used[$i]:-}" ]] && continue 2
    done
    echo "$base"
    return 0
  done
  die "no room for $n hosts in 10.213.0.0/16"
}

# Runs inside "ip netns exec NS unshare --mount --uts --propagation private": $1 = the host's
# sshd_config path (so every stage of the process chain carries it in argv), $2 = host name.
# Directories are opened first and bound through /proc/self/fd, so the state may live under any
# of the directories being covered (/tmp by default). "mount -c" matters: without it mount(8)
# canonicalises /proc/self/fd/N to its path text, which then resolves inside the new /tmp.
# shellcheck disable=SC2016
INNER='set -e
cfg=$1; d=${cfg%/sshd/sshd_config}
exec 3<"$d/sshd" 4<"$d/root" 5<"$d/tmp"
mount -t overlay pcl-lab-etc -o "lowerdir=/etc,upperdir=$d/etc-upper,workdir=$d/etc-work" /etc
mount -t overlay pcl-lab-varlib -o "lowerdir=/var/lib,upperdir=$d/varlib-upper,workdir=$d/varlib-work" /var/lib
mount -t tmpfs -o mode=0755,size=64m pcl-lab-run /run
mkdir -m 0755 /run/sshd
mount -c --bind /proc/self/fd/4 /root
mount -c --bind /proc/self/fd/5 /tmp
if ! [ "$d/sshd" -ef /proc/self/fd/3 ]; then mkdir -p "$d/sshd"; mount -c --bind /proc/self/fd/3 "$d/sshd"; fi
exec 3<&- 4<&- 5<&-
echo "$2" >/proc/sys/kernel/hostname
exec /usr/sbin/sshd -D -f "$cfg" -E "$d/sshd/sshd.log"'

ssh_opts() { # ssh_opts KNOWN_HOSTS -> options for system ssh (into the array SSH_OPTS)
  SSH_OPTS=(-F /dev/null -i "$CLIENT_KEY" -o IdentitiesOnly=yes -o BatchMode=yes
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$1" -o GlobalKnownHostsFile=/dev/null
    -o CheckHostIP=no -o ConnectTimeout=5 -o ServerAliveInterval=5 -o ServerAliveCountMax=3
    -o LogLevel=ERROR -o KexAlgorithms=^curve25519-sha256)
}

# PID's network namespace has a TCP socket listening on port 22 (builtins only: no fork)
listening_22() {
  local local_addr st
  while read -r _ local_addr _ st _; do
    [[ "$st" == 0A && "$local_addr" == *:0016 ]] && return 0
  done 2>/dev/null <"/proc/$1/net/tcp"
  return 1
}

probe_one() { # probe_one ADDR PID: retry until sshd accepts us (StrictHostKeyChecking=yes)
  local addr="$1" pid="$2" deadline=$((SECONDS + READY_TIMEOUT))
  ssh_opts "$KNOWN_HOSTS"
  # first wait for the listener cheaply: each refused ssh attempt costs an exec of ssh
  until listening_22 "$pid"; do
    if ((SECONDS >= deadline)) || ! is_running "$pid"; then
      echo "$addr"
      return 1
    fi
    sleep 0.05
  done
  until ssh "${SSH_OPTS[@]}" "root@$addr" true </dev/null >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! is_running "$pid"; then
      echo "$addr"
      return 1
    fi
    sleep 0.05
  done
}

cmd_up() {
  (($# >= 1 && $# <= 2)) || usage
  local n="$1" p="${2:-pcl}"
  if ! [[ "$n" =~ ^[0-9]{1,3}$ ]] || ((10#$n < 1 || 10#$n > MAX_HOSTS)); then die "N must be 1..$MAX_HOSTS (got '$n')"; fi
  n=$((10#$n))
  valid_prefix "$p"
  local i t0 t1 t2 t3 pdir="$NS_DIR/$p"
  t0="$(now_ms)"
  take_lock
  shopt -s nullglob

  # a previous run of this prefix (or its leftovers) goes first
  local links nslist
  links="$(our_root_links)"
  nslist="$(ip netns list 2>/dev/null || true)"
  if [[ -e "$pdir" ]] || grep -q " $p\$" <<<"$links" || grep -qE "^$p-h[0-9]+( |\$)" <<<"$nslist"; then
    down_prefix "$p"
  fi
  ensure_client_key

  # names we are about to create must be free (down_prefix leaves another lab's alone)
  local taken="" name
  nslist=" $(ip netns list 2>/dev/null | awk '{ printf "%s ", $1 }') "
  links=" $(ip -o link show 2>/dev/null | awk '{ n = $2; sub(/:$/, "", n); sub(/@.*/, "", n); printf "%s ", n }') "
  for ((i = 1; i <= n; i++)); do
    name="$p-h$i"
    [[ "$nslist" == *" $name "* || "$links" == *" $name "* ]] && taken+=" $name ($(holder_of "$name"))"
  done
  [[ -z "$taken" ]] || die "names taken:$taken; this lab ($LAB_DIR) leaves them alone. Use another PREFIX, or stop those hosts from their own lab: PULUMI_CONNTRACK_LAB_DIR=<its directory> bash lab/netns/hosts.sh down $p"

  local base
  base="$(allocate "$n" "$p")"
  # from here on a failed start removes what it made (a failed create leaves nothing behind)
  UP_PREFIX="$p"
  trap up_failed EXIT
  # the prefix's state lives on a tmpfs: creating ~2300 small files and removing them again is
  # seconds on a disk mounted with "discard", milliseconds here; down unmounts it
  mkdir -p "$pdir"
  mount -t tmpfs -o mode=0755,size=2g pcl-lab-state "$pdir"
  echo "$base $n" >"$pdir/alloc"

  # per-host files (few forks: this loop runs up to 100 times on 2 cores)
  local name hd off etc_hosts
  etc_hosts="$(</etc/hosts)"
  local -a names=() haddrs=() naddrs=() hds=() keygens=()
  for ((i = 1; i <= n; i++)); do
    off=$(((base + i - 1) * 4))
    names+=("$p-h$i")
    hds+=("$pdir/h$i")
    haddrs+=("$NET.$((off / 256)).$((off % 256 + 1))")
    naddrs+=("$NET.$((off / 256)).$((off % 256 + 2))")
  done
  mkdir -p "${hds[@]}"
  mkdir -m 0755 "${hds[@]/%//sshd}" "${hds[@]/%//etc-upper}" "${hds[@]/%//etc-work}" "${hds[@]/%//varlib-upper}" "${hds[@]/%//varlib-work}"
  mkdir -m 0700 "${hds[@]/%//root}"
  mkdir -m 0700 "${hds[@]/%//root/.ssh}"
  mkdir -m 1777 "${hds[@]/%//tmp}"
  for ((i = 1; i <= n; i++)); do
    name="${names[i - 1]}"
    hd="${hds[i - 1]}"
    ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$hd/sshd/ssh_host_ed25519_key" &
    keygens+=("$!")
    printf '%s\n' "$name" >"$hd/etc-upper/hostname"
    printf '%s\n127.0.1.1 %s\n' "$etc_hosts" "$name" >"$hd/etc-upper/hosts"
    printf '%s %s\n' "$CLIENT_PUB" "$LAB_NAME" >"$hd/root/.ssh/authorized_keys"
    printf 'NAME=%s\nADDR=%s\nHOST_ADDR=%s\n' "$name" "${naddrs[i - 1]}" "${haddrs[i - 1]}" >"$hd/host.env"
    printf '%s\n' \
      "# pulumi-conntrack lab host $name (lab/netns/hosts.sh)" \
      "Port 22" \
      "ListenAddress 0.0.0.0" \
      "HostKey $hd/sshd/ssh_host_ed25519_key" \
      "PidFile none" \
      "PermitRootLogin prohibit-password" \
      "PubkeyAuthentication yes" \
      "AuthorizedKeysFile .ssh/authorized_keys" \
      "PasswordAuthentication no" \
      "KbdInteractiveAuthentication no" \
      "UsePAM no" \
      "UseDNS no" \
      "MaxStartups 100:30:200" \
      "MaxSessions 100" \
      "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256" \
      "PrintMotd no" \
      "PrintLastLog no" \
      "X11Forwarding no" \
      "AcceptEnv LANG LC_*" \
      "Subsystem sftp internal-sftp" \
      "LogLevel INFO" \
      ${SESSION_PATH:+"SetEnv PATH=$SESSION_PATH"} >"$hd/sshd/sshd_config"
  done
  t1="$(now_ms)"

  # network: namespace, veth, its marker (the kernel takes no alias in "link add": a crash right
  # between the two lines leaves a veth no lab claims), host-side address
  local batch="" hi
  for ((i = 1; i <= n; i++)); do
    printf -v hi '%02x:%02x' $((i / 256)) $((i % 256))
    batch+="netns add ${names[i - 1]}
link add ${names[i - 1]} address $MAC_HOST:$hi type veth peer name eth0 address $MAC_NS:$hi netns ${names[i - 1]}
link set dev ${names[i - 1]} alias $MARKER
addr add ${haddrs[i - 1]}/30 dev ${names[i - 1]}
link set dev ${names[i - 1]} up
"
  done
  printf '%s' "$batch" | ip -batch - || die "creating namespaces and veths failed"
  local -a jobs=()
  for ((i = 1; i <= n; i++)); do
    printf 'link set dev lo up\naddr add %s/30 dev eth0\nlink set dev eth0 up\n' "${naddrs[i - 1]}" |
      ip -n "${names[i - 1]}" -batch - &
    jobs+=("$!")
  done
  for i in "${jobs[@]}"; do wait "$i" || die "configuring a namespace's eth0 failed"; done
  for i in "${keygens[@]}"; do wait "$i" || die "ssh-keygen for a host key failed"; done
  t2="$(now_ms)"

  # sshds (pid = the final sshd: setsid, ip netns exec, unshare and sh all exec in place)
  for ((i = 1; i <= n; i++)); do
    hd="$pdir/h$i"
    setsid ip netns exec "${names[i - 1]}" unshare --mount --uts --propagation private \
      sh -c "$INNER" pcl-lab-host "$hd/sshd/sshd_config" "${names[i - 1]}" \
      </dev/null >>"$hd/sshd/boot.log" 2>&1 9>&- &
    echo "$!" >"$hd/sshd.pid"
  done

  # known_hosts and hosts.json
  KNOWN_HOSTS="$pdir/known_hosts"
  local kt kb json="[" sep=""
  : >"$KNOWN_HOSTS.tmp"
  for ((i = 1; i <= n; i++)); do
    read -r kt kb _ <"$pdir/h$i/sshd/ssh_host_ed25519_key.pub"
    printf '%s %s %s\n' "${naddrs[i - 1]}" "$kt" "$kb" >>"$KNOWN_HOSTS.tmp"
    # every value is plain (names, addresses, base64, paths checked at the top): no escaping
    json+="$sep
  {\"name\": \"${names[i - 1]}\", \"host\": \"${naddrs[i - 1]}\", \"port\": 22, \"user\": \"root\", \"privateKeyPath\": \"$CLIENT_KEY\", \"hostKey\": \"$kt $kb\", \"knownHostsPath\": \"$KNOWN_HOSTS\"}"
    sep=","
  done
  mv -f "$KNOWN_HOSTS.tmp" "$KNOWN_HOSTS"
  t3="$(now_ms)"

  # wait until every sshd accepts us
  export KNOWN_HOSTS CLIENT_KEY READY_TIMEOUT
  export -f probe_one ssh_opts is_running listening_22
  local failed
  local probes=""
  for ((i = 1; i <= n; i++)); do probes+="${naddrs[i - 1]} $(<"$pdir/h$i/sshd.pid")"$'\n'; done
  # shellcheck disable=SC2016 # expanded by the inner bash
  failed="$(printf '%s' "$probes" | xargs -P "$PROBE_PARALLEL" -n 2 bash -c 'probe_one "$1" "$2"' _)" || true
  if [[ -n "$failed" ]]; then
    local a
    for a in $failed; do
      for ((i = 1; i <= n; i++)); do
        [[ "${naddrs[i - 1]}" == "$a" ]] || continue
        log "${names[i - 1]} ($a) did not accept ssh within ${READY_TIMEOUT}s; its logs:"
        tail -n 20 "$pdir/h$i/sshd/boot.log" "$pdir/h$i/sshd/sshd.log" >&2 2>/dev/null || true
      done
    done
    exit 1
  fi

  printf '%s\n]\n' "$json" >"$pdir/hosts.json.tmp"
  mv -f "$pdir/hosts.json.tmp" "$pdir/hosts.json"
  log "up $p: $n hosts ready in $(($(now_ms) - t0)) ms (files $((t1 - t0)), network+keys $((t2 - t1)), sshd start $((t3 - t2)), ssh probes $(($(now_ms) - t3)))"
  trap - EXIT
  printf '%s\n' "$pdir/hosts.json"
}

up_failed() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)) && [[ -n "${UP_PREFIX:-}" ]]; then
    log "up failed: removing what this run created"
    down_prefix "$UP_PREFIX" || true
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# exec

cmd_exec() {
  (($# >= 2)) || usage
  local name="$1"
  shift
  [[ "$name" =~ ^([a-z0-9]{1,8})-h([0-9]{1,3})$ ]] || die "not a lab host name: '$name'"
  local pdir="$NS_DIR/${BASH_REMATCH[1]}" i="${BASH_REMATCH[2]}" ADDR=""
  [[ -r "$pdir/h$i/host.env" ]] || die "no such lab host: $name (no $pdir/h$i/host.env)"
  ADDR="$(sed -n 's/^ADDR=//p' "$pdir/h$i/host.env")"
  ssh_opts "$pdir/known_hosts"
  exec ssh "${SSH_OPTS[@]}" -- "root@$ADDR" "$@"
}

# ---------------------------------------------------------------------------------------------
(($(id -u) == 0)) || die "must run as root (network namespaces, mounts)"
(($# >= 1)) || usage
cmd="$1"
shift
case "$cmd" in
up) cmd_up "$@" ;;
down) (($# <= 1)) || usage; cmd_down "$@" ;;
exec) cmd_exec "$@" ;;
*) usage ;;
esac
