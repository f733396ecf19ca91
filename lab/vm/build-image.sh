#!/usr/bin/env bash
# Build (or reuse) a Debian VM image of the pulumi-conntrack test lab: Debian 12 (bookworm) by
# default, or 11 (bullseye) or 13 (trixie) with PULUMI_CONNTRACK_DEBIAN_RELEASE. A release may name
# a variant after a "+": "bookworm+ufw" has ufw instead of iptables-persistent (Debian's ufw
# Breaks netfilter-persistent: a host has one or the other); "bookworm+neighbours" adds Docker
# (docker.io) and fail2ban, not started at boot.
#
# Everything comes from Debian's packages: debootstrap --variant=minbase RELEASE, the cloud kernel,
# systemd, openssh-server, iptables (+ iptables-persistent), conntrack. The image carries NO SSH
# identity: at every boot a unit reads the root authorized key and the ed25519 host key from qemu
# fw_cfg entries chosen by the lab (lab/vm/vm.sh), so each VM instance has its own host key.
#
# Output, cached outside the repo:
#   ${PULUMI_CONNTRACK_CACHE:-$HOME/.cache/pulumi-conntrack}/vm/<release>[+<variant>]-<recipe-hash>/
#     rootfs.img  (ext4, 3 GiB sparse; the root fs, /dev/vda in the guest)
#     vmlinuz, initrd.img, cmdline (kernel command line for -append), kernel-release, manifest
#     complete    (written last; a dir without it is never used)
# recipe-hash = first 16 hex of sha256 of this script (every guest file is embedded below).
# The image dir is printed as the last line of stdout; all progress goes to stderr.
#
# Env: PULUMI_CONNTRACK_CACHE, PULUMI_CONNTRACK_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#      PULUMI_CONNTRACK_IMAGE_SIZE (default 3G), PULUMI_CONNTRACK_DEBIAN_RELEASE (bookworm).
set -euo pipefail

exec 3>&1 1>&2 # stdout is reserved for the final line

die() { echo "build-image: error: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot)"
for tool in debootstrap mkfs.ext4 chroot sha256sum flock; do
  command -v "$tool" >/dev/null || die "missing $tool (apt-get install debootstrap e2fsprogs coreutils util-linux)"
done

RELEASE=${PULUMI_CONNTRACK_DEBIAN_RELEASE:-bookworm}
[[ $RELEASE =~ ^(bullseye|bookworm|trixie)(\+(ufw|neighbours))?$ ]] || die "PULUMI_CONNTRACK_DEBIAN_RELEASE must be bullseye, bookworm or trixie, optionally +ufw or +neighbours (got '$RELEASE')"
SUITE=${RELEASE%%+*}
# The firewall packages: iptables-persistent (netfilter-persistent) by default, ufw in its variant;
# the neighbours variant adds the tools whose rules live beside ours on busy hosts (Docker,
# fail2ban with its journal backend), installed but not started at boot.
NEIGHBOURS=()
case $RELEASE in
  *+ufw) PERSISTENT=ufw ;;
  *+neighbours) PERSISTENT=iptables-persistent; NEIGHBOURS=(docker.io fail2ban python3-systemd) ;;
  *) PERSISTENT=iptables-persistent ;;
esac
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
HASH=$(sha256sum "$SCRIPT" | cut -c1-16)
CACHE=${PULUMI_CONNTRACK_CACHE:-$HOME/.cache/pulumi-conntrack}
MIRROR=${PULUMI_CONNTRACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SIZE=${PULUMI_CONNTRACK_IMAGE_SIZE:-3G}
VMCACHE=$CACHE/vm
OUT=$VMCACHE/$RELEASE-$HASH

mkdir -p "$VMCACHE"
# One builder per recipe at a time (parallel test workers may all ask for the image).
exec 9>"$VMCACHE/.lock-$RELEASE-$HASH"
flock 9

if [[ -f $OUT/complete ]]; then
  echo "build-image: reusing $OUT" >&2
  echo "$OUT" >&3
  exit 0
fi

START=$(date +%s)
WORK=$(mktemp -d "$VMCACHE/.build-$RELEASE-$HASH.XXXXXX")
ROOT=$WORK/rootfs

cleanup() {
  local rc=$?
  # Never leave a mount inside the build tree (and never rm -rf through one).
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m" || true; fi
  done
  if [[ -n ${WORK:-} && -d $WORK ]]; then
    if grep -q " $WORK/" /proc/mounts; then
      echo "build-image: mounts still under $WORK; leaving it in place" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_root() {
  LC_ALL=C LANG=C DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" "$@"
}

echo "build-image: building recipe $HASH of $RELEASE in $WORK (mirror $MIRROR)" >&2

# --- 1. base system --------------------------------------------------------------------------------
# The kernel is installed in step 3, after the initramfs settings are in place (one mkinitramfs run).
# sudo: the privilege tests log in as users other than root, as production hosts are reached.
debootstrap --variant=minbase \
  --include=systemd-sysv,udev,dbus,openssh-server,iptables,kmod,procps,iproute2,initramfs-tools,conntrack,sudo \
  "$SUITE" "$ROOT" "$MIRROR" >&2
T_DEBOOTSTRAP=$(( $(date +%s) - START ))

# --- 2. guest configuration (before the kernel, so its initramfs is built once, right) -------------
# Nothing may start inside the chroot (a started service would act on the BUILD host).
cat >"$ROOT/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
exit 101
EOF
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

# initramfs: only what this VM needs to find its root (virtio disk); no resume wait.
cat >"$ROOT/etc/initramfs-tools/conf.d/pulumi-conntrack" <<'EOF'
MODULES=list
RESUME=none
EOF
cat >>"$ROOT/etc/initramfs-tools/modules" <<'EOF'
# pulumi-conntrack lab: the root fs is a virtio disk
virtio_pci
virtio_blk
EOF

# --- 3. kernel, iptables-persistent, and the other firewalls' packages -----------------------------
# nftables and firewalld are installed but disabled, and ufw in its variant: a test that needs a
# host whose firewall is one of them enables it (firewalld conflicts with netfilter-persistent's unit).
# iptables-persistent's postinst would save the *current* rules if these answers were true; in a
# chroot "current" means the build host's rules.
cat >"$ROOT/tmp/preseed" <<'EOF'
iptables-persistent iptables-persistent/autosave_v4 boolean false
iptables-persistent iptables-persistent/autosave_v6 boolean false
EOF
in_root debconf-set-selections /tmp/preseed
rm -f "$ROOT/tmp/preseed"
mount -t proc proc "$ROOT/proc"
in_root apt-get install -y --no-install-recommends linux-image-cloud-amd64 "$PERSISTENT" nftables firewalld "${NEIGHBOURS[@]}" >&2
umount "$ROOT/proc"
in_root apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/*
[[ ! -e $ROOT/etc/iptables/rules.v4 && ! -e $ROOT/etc/iptables/rules.v6 ]] \
  || die "iptables-persistent saved rules into the image (preseed failed)"
T_PACKAGES=$(( $(date +%s) - START ))

# --- 4. system settings ----------------------------------------------------------------------------
echo conntrack-lab >"$ROOT/etc/hostname" # each VM gets systemd.hostname=<name> on its cmdline
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	conntrack-lab
::1		localhost ip6-localhost ip6-loopback
EOF
# No fsck pass: the disk is a throwaway overlay; ext4's journal covers unclean stops.
cat >"$ROOT/etc/fstab" <<'EOF'
/dev/vda  /  ext4  rw,errors=remount-ro  0  0
EOF
# qemu user-mode networking's DNS forwarder.
rm -f "$ROOT/etc/resolv.conf"
echo "nameserver 10.0.2.3" >"$ROOT/etc/resolv.conf"

cat >"$ROOT/etc/systemd/network/10-en.network" <<'EOF'
[Match]
Name=en*

[Network]
DHCP=ipv4
EOF
in_root systemctl enable systemd-networkd.service >&2
# Units that only cost boot time (or would prompt/upgrade) in a lab VM. A masked unit stays masked.
in_root systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  apt-daily.service apt-daily-upgrade.service systemd-firstboot.service e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer systemd-update-utmp.service systemd-update-utmp-runlevel.service \
  modprobe@drm.service modprobe@efi_pstore.service systemd-pstore.service \
  sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount >&2
# The journal stays in memory (journalctl -b works; no flush to disk on the boot's critical path).
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
cat >"$ROOT/etc/systemd/journald.conf.d/lab-vm.conf" <<'EOF'
[Journal]
Storage=volatile
RuntimeMaxUse=32M
EOF
if [[ $PERSISTENT == ufw ]]; then
  in_root systemctl disable firewalld.service nftables.service ufw.service >&2
else
  in_root systemctl enable netfilter-persistent.service >&2
  in_root systemctl disable firewalld.service nftables.service >&2
fi
if [[ ${#NEIGHBOURS[@]} -gt 0 ]]; then
  in_root systemctl disable docker.service docker.socket containerd.service fail2ban.service >&2
  # Debian's sshd jail reads /var/log/auth.log, which a host without rsyslog lacks: the journal.
  cat >"$ROOT/etc/fail2ban/jail.d/pulumi-conntrack-lab.conf" <<'EOF'
[sshd]
enabled = true
backend = systemd
EOF
fi

# Drivers udev would autoload for the emulated machine (-cpu max has svm/vmx; i440fx has IDE) that
# only cost boot time under emulation.
cat >"$ROOT/etc/modprobe.d/lab-vm-no-hw.conf" <<'EOF'
# pulumi-conntrack lab VM: not needed under qemu TCG
blacklist kvm_amd
blacklist kvm_intel
blacklist kvm
blacklist powernow_k8
blacklist ata_piix
blacklist ata_generic
blacklist pata_acpi
blacklist floppy
blacklist pcspkr
EOF

# --- 5. SSH: key-only root login, identity from qemu fw_cfg at every boot --------------------------
rm -f "$ROOT"/etc/ssh/ssh_host_*
rm -rf "$ROOT/root/.ssh"
cat >"$ROOT/etc/ssh/sshd_config.d/pulumi-conntrack.conf" <<'EOF'
# pulumi-conntrack lab VM. The key files are installed at boot by pulumi-conntrack-identity.service.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
@KBD_INTERACTIVE@ no
AuthenticationMethods publickey
UseDNS no
# Under emulation a handshake takes a while; tests open many connections at once.
MaxStartups 200:30:400
MaxSessions 100
LoginGraceTime 120
EOF

# OpenSSH 8.4 (bullseye) knows this option only by its older name.
kbd=KbdInteractiveAuthentication
[[ $SUITE != bullseye ]] || kbd=ChallengeResponseAuthentication
sed -i "s/@KBD_INTERACTIVE@/$kbd/" "$ROOT/etc/ssh/sshd_config.d/pulumi-conntrack.conf"

cat >"$ROOT/usr/local/sbin/pulumi-conntrack-identity" <<'EOF'
#!/bin/sh
# Install the SSH identity the lab chose for this VM instance (qemu -fw_cfg entries):
#   opt/pulumi-conntrack/authorized_key -> /root/.ssh/authorized_keys
#   opt/pulumi-conntrack/host_key       -> /etc/ssh/ssh_host_ed25519_key (+ .pub), other host keys removed
set -eu
FW=/sys/firmware/qemu_fw_cfg/by_name/opt/pulumi-conntrack
modprobe qemu_fw_cfg 2>/dev/null || echo "identity: modprobe qemu_fw_cfg failed" >&2
i=0
while [ ! -d /sys/firmware/qemu_fw_cfg/by_name ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
umask 077
K=/etc/ssh/ssh_host_ed25519_key
if [ -r "$FW/host_key/raw" ]; then
  cat "$FW/host_key/raw" >"$K.new"
  ssh-keygen -y -f "$K.new" >"$K.pub.new"
  chmod 644 "$K.pub.new"
  mv -f "$K.new" "$K"
  mv -f "$K.pub.new" "$K.pub"
  echo "identity: host key from fw_cfg: $(cut -d' ' -f1,2 "$K.pub")"
elif [ ! -s "$K" ]; then
  echo "identity: no host key in fw_cfg; generating a random one" >&2
  rm -f "$K" "$K.pub"
  ssh-keygen -q -t ed25519 -N '' -C '' -f "$K"
fi
for f in /etc/ssh/ssh_host_*; do
  case "$f" in "$K" | "$K.pub") ;; *) rm -f "$f" ;; esac
done
if [ -r "$FW/authorized_key/raw" ]; then
  mkdir -p /root/.ssh
  chmod 700 /root/.ssh
  cat "$FW/authorized_key/raw" >/root/.ssh/authorized_keys.new
  mv -f /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
  echo "identity: root authorized key from fw_cfg"
else
  echo "identity: no authorized key in fw_cfg; root has no SSH login" >&2
fi
EOF
chmod 755 "$ROOT/usr/local/sbin/pulumi-conntrack-identity"

# Ordered only after the root fs and before ssh.service: it runs in parallel with the rest of the boot.
cat >"$ROOT/etc/systemd/system/pulumi-conntrack-identity.service" <<'EOF'
[Unit]
Description=pulumi-conntrack lab: SSH identity from qemu fw_cfg
DefaultDependencies=no
After=local-fs.target
Before=ssh.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/pulumi-conntrack-identity

[Install]
WantedBy=multi-user.target ssh.service
EOF
in_root systemctl enable pulumi-conntrack-identity.service >&2

# The identity script needs the module on the root fs (udev also autoloads it via ACPI QEMU0002).
KREL=$(ls "$ROOT/lib/modules")
[[ $(wc -w <<<"$KREL") -eq 1 ]] || die "expected one kernel in the image, found: $KREL"
find "$ROOT/lib/modules/$KREL" -name 'qemu_fw_cfg.ko*' | grep -q . \
  || grep -q '^CONFIG_FW_CFG_SYSFS=y' "$ROOT/boot/config-$KREL" \
  || die "kernel $KREL has no qemu_fw_cfg (CONFIG_FW_CFG_SYSFS)"
command -v "$ROOT/usr/bin/perl" >/dev/null || [[ -x $ROOT/usr/bin/perl ]] || die "perl missing from the image"

# A machine-id is given per VM on the kernel command line (systemd.machine_id=); the image keeps a
# valid one so no boot is a "first boot" (no presets re-applied, no firstboot prompts).
[[ -s $ROOT/etc/machine-id ]] || in_root systemd-machine-id-setup >&2

rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/var/log/*.log "$ROOT"/var/cache/debconf/*-old

# --- 6. kernel + initrd out, ext4 image ------------------------------------------------------------
cp "$ROOT/boot/vmlinuz-$KREL" "$WORK/vmlinuz"
cp "$ROOT/boot/initrd.img-$KREL" "$WORK/initrd.img"
echo "$KREL" >"$WORK/kernel-release"
# console on the serial port (logged by vm.sh), root is the virtio disk, no quiet, no resume wait.
echo "root=/dev/vda rootfstype=ext4 rw console=ttyS0,115200 noresume edd=off tsc=reliable mitigations=off random.trust_cpu=on systemd.show_status=auto" \
  >"$WORK/cmdline"

for m in proc sys dev/pts dev; do
  ! mountpoint -q "$ROOT/$m" || die "$ROOT/$m is still mounted"
done
USED=$(du -sx --block-size=1M "$ROOT" | cut -f1)
mkfs.ext4 -q -F -L pcroot -m 1 -d "$ROOT" "$WORK/rootfs.img" "$SIZE" >&2
rm -rf "$ROOT"
END=$(date +%s)

cat >"$WORK/manifest" <<EOF
recipe=$HASH
release=$RELEASE
kernel=$KREL
mirror=$MIRROR
rootfs_used_mb=$USED
image_size=$SIZE
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
seconds_debootstrap=$T_DEBOOTSTRAP
seconds_packages=$T_PACKAGES
seconds_total=$(( END - START ))
EOF
touch "$WORK/complete"
rm -rf "$OUT" # a stale, incomplete dir of the same recipe
mv "$WORK" "$OUT"
WORK=
# Older recipes' images of this release go (a stopped VM whose image is gone gets a fresh disk at
# its next boot; a running one keeps its open file), and images of the days before releases had
# names. Also leftovers of builds that died (their recipe's lock is free). Other releases stay.
release_re=${RELEASE//+/\\+} # "bookworm+ufw" as a regex
for d in "$VMCACHE"/*/ "$VMCACHE"/.build-*/; do
  d=${d%/}
  [[ -d $d ]] || continue
  b=$(basename "$d")
  if [[ $b =~ ^($release_re-)?[0-9a-f]{16}$ ]]; then
    [[ $b != "$RELEASE-$HASH" ]] || continue
  elif [[ $b =~ ^\.build-($release_re-[0-9a-f]{16})\. ]]; then
    if [[ ${BASH_REMATCH[1]} != "$RELEASE-$HASH" ]]; then
      flock -n "$VMCACHE/.lock-${BASH_REMATCH[1]}" true || continue # being built right now
    fi
  else
    continue
  fi
  grep -q " $d/" /proc/mounts && continue
  echo "build-image: removing old $d" >&2
  rm -rf "$d"
  rm -f "$VMCACHE/.lock-$b"
done

echo "build-image: built $OUT in $(( END - START ))s (rootfs ${USED} MiB, kernel $KREL)" >&2
echo "$OUT" >&3
