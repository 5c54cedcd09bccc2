#!/bin/bash
# ns-boot.sh DIR [TARGET]
#
# Boots a real systemd as PID 1 over a copy-on-write overlay of "/".
# MUST be run as the first process of fresh namespaces, e.g.:
#
#   setsid unshare --mount --pid --net --uts --fork --propagation private \
#       scripts/ns-boot.sh DIR [multi-user.target]
#
# DIR is an (empty) scratch directory. Inside our private mount namespace a tmpfs
# is mounted over it, so nothing written by the sandbox ever reaches the host
# filesystem, and the host's /tmp is never touched (the sandbox gets its own
# tmpfs /tmp and /run; its early-boot `systemd-tmpfiles --remove` only sees those).
#
# Optional environment:
#   NSBOOT_CGROUP  name of a private cgroup subtree (default: sdepmd-ns-<basename DIR>).
#                  systemd treats that subtree as its root, so concurrent sandboxes
#                  never share unit cgroups, and the whole sandbox can be killed via
#                  cgroup.kill.
#   NSBOOT_MASK    space-separated unit names masked (-> /dev/null) before boot, in
#                  addition to a built-in list of units that could affect the host kernel.
#   NSBOOT_HOSTNAME  hostname inside the UTS namespace (default: sdepmd-sandbox).
set -euo pipefail

DIR=${1:?usage: ns-boot.sh DIR [TARGET]}
TARGET=${2:-basic.target}
CG=${NSBOOT_CGROUP:-sdepmd-ns-$(basename "$DIR")}

if [ "$$" != 1 ]; then
    echo "ns-boot.sh: refusing to run: not PID 1 of a new PID namespace (pid $$)" >&2
    exit 2
fi
# Guard: we must be in a private mount namespace, never the host's. /proc is still
# the host's procfs here, so /proc/1 is the host's init.
if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then
    echo "ns-boot.sh: refusing to run: mount namespace is shared with the host" >&2
    exit 2
fi

# --- cgroups: move ourselves into a private subtree -------------------------------
# systemd derives its root cgroup from PID 1's own cgroup, so it will manage
# /<CG>/init.scope, /<CG>/system.slice/... and never collide with the host or with
# another sandbox. v1 controller hierarchies are left alone: systemd creates /<CG>/...
# there itself when it needs them. The harness removes /<CG> in every hierarchy.
if [ -f /sys/fs/cgroup/cgroup.procs ]; then
    hier=/sys/fs/cgroup                                   # pure cgroup v2
else
    hier="/sys/fs/cgroup/unified /sys/fs/cgroup/systemd"  # hybrid / legacy
fi
for h in $hier; do
    [ -f "$h/cgroup.procs" ] || continue
    mkdir -p "$h/$CG"
    echo $$ > "$h/$CG/cgroup.procs"
done

# --- filesystem -------------------------------------------------------------------
mount -t tmpfs -o mode=0755 sandbox "$DIR"
mkdir -p "$DIR/upper" "$DIR/work" "$DIR/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$DIR/upper,workdir=$DIR/work" "$DIR/root"
R="$DIR/root"

# /dev: minimal private tmpfs (like systemd-nspawn), so nothing (tmpfiles static
# nodes, etc.) is created on the host's devtmpfs.
mount -t tmpfs -o mode=0755,nosuid dev "$R/dev"
for n in null zero full random urandom tty; do
    touch "$R/dev/$n"
    mount --bind "/dev/$n" "$R/dev/$n"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"

# /proc: fresh instance for the new PID namespace; /proc/sys read-only except the
# per-network-namespace /proc/sys/net.
mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount --bind "$R/proc/sys/net" "$R/proc/sys/net"
mount -o remount,bind,ro "$R/proc/sys"

# /sys: a fresh read-only sysfs (so /sys/class/net shows this network namespace,
# not the host's), plus the host's cgroup hierarchies, which systemd manages (inside
# the private subtree chosen above).
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"

mount -t tmpfs -o mode=0755,nosuid,nodev run "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$R/tmp"

# Host paths the tests need to see as they are (the checkout, wherever it lies, /tmp included), read-only.
IFS=: read -r -a binds <<< "${NSBOOT_BIND:-}"
for p in "${binds[@]}"; do
  [ -n "$p" ] && [ -d "$p" ] || continue
  mkdir -p "$R$p"
  mount --rbind "$p" "$R$p"
  mount -o remount,bind,ro "$R$p"
done

# --- units: mask what could touch the host kernel, plus caller's list -------------
mkdir -p "$R/etc/systemd/system"
for u in systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service \
         proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
         systemd-timesyncd.service systemd-pstore.service kmod-static-nodes.service \
         systemd-firstboot.service systemd-repart.service e2scrub_reap.service \
         getty@tty1.service console-getty.service ${NSBOOT_MASK:-}; do
    ln -sfn /dev/null "$R/etc/systemd/system/$u"
done
# An empty machine-id makes systemd generate a transient one (on the sandbox /run).
: > "$R/etc/machine-id"

# --- network / hostname -----------------------------------------------------------
ip link set lo up
# systemd sets the hostname from /etc/hostname at boot, so write it (in the overlay).
echo "${NSBOOT_HOSTNAME:-sdepmd-sandbox}" > "$R/etc/hostname"
hostname "${NSBOOT_HOSTNAME:-sdepmd-sandbox}"

# --- switch root and become systemd -----------------------------------------------
cd "$R"
mkdir -p oldroot
pivot_root . oldroot
cd /
umount -l /oldroot
rmdir /oldroot 2>/dev/null || true

export container=other
exec /lib/systemd/systemd --system --unit="$TARGET" --show-status=no
