#!/usr/bin/env bash
# Prints the path of a stock Debian root (debootstrap minbase plus what it takes to boot: systemd, systemd-sysv,
# dbus), creating it once and caching it between runs on this machine:
#
#   scripts/debian-root.sh bookworm|trixie      -> /var/cache/sdepmd-platform/<suite>/root
#
# SDEPMD_PLATFORM_CACHE overrides the cache directory, SDEPMD_DEBIAN_MIRROR the mirror (default: the first
# deb.debian.org-style URI of this machine's apt sources, else http://deb.debian.org/debian). Concurrent callers
# wait for one another (flock). A root is rebuilt after 7 days so that apt's lists inside stay usable; nothing
# else is added to it: tests put a copy-on-write overlay over it and install what the README says, inside.
set -euo pipefail
suite="${1:?usage: debian-root.sh bookworm|trixie}"
case "$suite" in bookworm|trixie) ;; *) echo "debian-root.sh: unsupported suite $suite" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "debian-root.sh: needs root" >&2; exit 1; }
cache="${SDEPMD_PLATFORM_CACHE:-/var/cache/sdepmd-platform}"
dir="$cache/$suite"
root="$dir/root"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ -f "$dir/.complete" ] && [ -z "$(find "$dir/.complete" -mtime +7 -print)" ]; then
  echo "$root"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debian-root.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
mirror="${SDEPMD_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | awk '{print $2}' | head -n1 || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
rm -rf "$root" "$root.tmp" "$dir/.complete"
start=$(date +%s)
echo "debian-root.sh: debootstrap --variant=minbase $suite from $mirror (about a minute)" >&2
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus "$suite" "$root.tmp" "$mirror" > "$dir/debootstrap.log" 2>&1 \
  || { tail -n 20 "$dir/debootstrap.log" >&2; rm -rf "$root.tmp"; exit 1; }
# The booted host must not try to get an address or a console login: nspawn gives it the machine's network.
rm -f "$root.tmp/etc/machine-id"; : > "$root.tmp/etc/machine-id"
echo "sdepmd-$suite" > "$root.tmp/etc/hostname"
mv "$root.tmp" "$root"
echo "$(( $(date +%s) - start ))" > "$dir/.seconds"
touch "$dir/.complete"
echo "$root"
