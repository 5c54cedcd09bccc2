#!/usr/bin/env bash
# Installs sdepmd as the host's epmd.
#
#   sudo scripts/install.sh [--enable] [--prefix DIR]   build (if needed) and install; with --enable, start it
#   sudo scripts/install.sh --uninstall [--force] [--prefix DIR]
#                                                       remove everything this script installed, stopping no app
#
# It installs the package under PREFIX/lib/sdepmd (default PREFIX=/usr/local) with PREFIX/bin/sdepmd, puts the
# units in /etc/systemd/system (overriding Debian's epmd.socket and epmd.service of the same names) and runs
# daemon-reload. A running sdepmd is then live-upgraded (`systemctl reload`), and a running C epmd is taken over
# with every registration (`sdepmd adopt`); it never restarts epmd.service (that would restart every app that
# requires it). With --enable it also enables epmd.socket. On a host where systemd is not PID 1, --enable instead
# runs the daemon in the foreground on port 4369. Running it again is a live upgrade.
# --uninstall removes the drop-ins `sdepmd attach` wrote first, so that no app is stopped, hands the port back to
# Debian's epmd units, and says how long the nodes took to register again; it refuses, unless --force, when some
# registrations belong to programs that cannot register again by themselves.
set -euo pipefail

prefix=/usr/local
enable=0
uninstall=0
force=
unit_dir=/etc/systemd/system
while [ $# -gt 0 ]; do
  case "$1" in
    --enable) enable=1 ;;
    --uninstall) uninstall=1 ;;
    --force) force=--force ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift ;;
    --prefix=*) prefix="${1#--prefix=}" ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "sdepmd install: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run me as root (sudo $0 $*)"; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
lib="$prefix/lib/sdepmd"
bin="$prefix/bin/sdepmd"
share="$prefix/share/sdepmd"
marker="# sdepmd:"
systemd_running() { [ -d /run/systemd/system ]; }

if [ "$uninstall" = 1 ]; then
  lifecycle="$repo/scripts/epmd-lifecycle.sh"
  # 1. No app may require epmd.service any more; refuse here if registrations would be lost for good.
  if systemd_running; then "$lifecycle" release $force || exit 1; fi
  if systemd_running; then
    # Remove only the enablement links that point at our units: Debian's (to /lib/systemd/system) stay.
    for link in "$unit_dir"/*.wants/epmd.socket "$unit_dir"/*.wants/epmd.service; do
      if [ -L "$link" ] && [ "$(readlink "$link")" = "$unit_dir/${link##*/}" ]; then rm -f "$link"; fi
    done
  fi
  for unit in epmd.socket epmd.service erlang-app@.service epmd.service.d/sdepmd-systemd-254.conf; do
    if [ -f "$unit_dir/$unit" ] && grep -q "^$marker" "$unit_dir/$unit"; then rm -f "$unit_dir/$unit"; say "removed $unit_dir/$unit"; fi
  done
  rmdir "$unit_dir/epmd.service.d" 2>/dev/null || true
  # operator files (see operator_files below)
  for unit in sdepmd-metrics.timer sdepmd-metrics.service; do
    if [ -f "$unit_dir/$unit" ] && grep -q "^$marker" "$unit_dir/$unit"; then
      systemd_running && systemctl disable --now "$unit" >/dev/null 2>&1 || true
      rm -f "$unit_dir/$unit"; say "removed $unit_dir/$unit"
    fi
  done
  rm -f "$prefix/share/man/man8/sdepmd.8" "$prefix/share/man/man5/sdepmd-units.5" \
    "$prefix/share/bash-completion/completions/sdepmd" "$prefix/share/zsh/site-functions/_sdepmd"
  rm -rf "$prefix/share/doc/sdepmd"
  if systemd_running; then
    systemctl daemon-reload
    # 2. End sdepmd without a stop job, and let Debian's units serve the port again.
    "$lifecycle" hand-back
  fi
  rm -rf "$lib" "$share"
  [ -L "$bin" ] && rm -f "$bin"
  say "uninstalled (Debian's own epmd units, if any, apply again)"
  exit 0
fi

# 1. Build, unless the tree is already built from this checkout.
"$repo/scripts/install-deps.sh"
cd "$repo"
. scripts/node-env.sh
scripts/ensure-npm.sh
if [ ! -f dist/cli/cli.js ] || [ ! -f native/sdepmd/build/Release/sdepmd.node ] || [ -n "$(find src -newer dist/cli/cli.js -print -quit)" ]; then
  say "building"
  npm run --silent build
fi

# 2. Stage a copy with production dependencies only, then swap it in.
stage=$(mktemp -d "$prefix/lib/.sdepmd.XXXXXX" 2>/dev/null || { mkdir -p "$prefix/lib"; mktemp -d "$prefix/lib/.sdepmd.XXXXXX"; })
trap 'rm -rf "$stage"' EXIT
cp -a package.json package-lock.json bin dist node_modules "$stage/"
mkdir -p "$stage/native/sdepmd/build/Release"
cp -a native/sdepmd/build/Release/sdepmd.node "$stage/native/sdepmd/build/Release/"
(cd "$stage" && npm prune --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
chmod -R a+rX "$stage"
rm -rf "$lib.old"
[ -d "$lib" ] && mv "$lib" "$lib.old"
mv "$stage" "$lib"
trap - EXIT
rm -rf "$lib.old"
mkdir -p "$prefix/bin" "$share"
ln -sfn "$lib/bin/sdepmd" "$bin"
cp units/epmd-dependency.conf units/epmd-socket-dependency.conf scripts/epmd-lifecycle.sh "$share/"
say "installed $lib and $bin ($("$bin" --version))"

# 3. Units: ours carry the marker, and ExecStart points at this prefix.
mkdir -p "$unit_dir"
for unit in epmd.socket epmd.service erlang-app@.service; do
  { echo "$marker installed by scripts/install.sh from $repo; remove with scripts/install.sh --uninstall"
    sed "s#/usr/local/bin/sdepmd#$bin#g" "units/$unit"; } > "$unit_dir/$unit.tmp"
  mv "$unit_dir/$unit.tmp" "$unit_dir/$unit"
done
# The settings systemd 252 does not know, only where systemd has them (older versions would warn).
systemd_version=$(systemctl --version 2>/dev/null | sed -nE '1s/^systemd ([0-9]+).*/\1/p')
newer="$unit_dir/epmd.service.d/sdepmd-systemd-254.conf"
if [ "${systemd_version:-0}" -ge 254 ]; then
  mkdir -p "$unit_dir/epmd.service.d"
  { echo "$marker installed by scripts/install.sh for systemd $systemd_version"; cat units/sdepmd-systemd-254.conf; } > "$newer.tmp"
  mv "$newer.tmp" "$newer"
  say "systemd $systemd_version: added $newer (RestartMode=direct, FileDescriptorStorePreserve=yes)"
elif [ -f "$newer" ] && grep -q "^$marker" "$newer"; then
  rm -f "$newer"
fi
say "units in $unit_dir: epmd.socket epmd.service erlang-app@.service; drop-in template in $share/epmd-dependency.conf"

# --- operator files: man pages, shell completion, docs, the metrics timer ------------------------------------------
# Paths (packagers: the same files, under /usr instead of PREFIX):
#   man/sdepmd.8, man/sdepmd-units.5  -> PREFIX/share/man/man8/, man5/
#   completion/sdepmd.bash            -> PREFIX/share/bash-completion/completions/sdepmd
#   completion/_sdepmd                -> PREFIX/share/zsh/site-functions/_sdepmd
#   docs/*.md                         -> PREFIX/share/doc/sdepmd/ (the units' Documentation= names operations.md)
#   units/sdepmd-metrics.{service,timer} -> /etc/systemd/system/ (not enabled: systemctl enable --now sdepmd-metrics.timer)
operator_files() {
  install -D -m 0644 man/sdepmd.8 "$prefix/share/man/man8/sdepmd.8"
  install -D -m 0644 man/sdepmd-units.5 "$prefix/share/man/man5/sdepmd-units.5"
  install -D -m 0644 completion/sdepmd.bash "$prefix/share/bash-completion/completions/sdepmd"
  install -D -m 0644 completion/_sdepmd "$prefix/share/zsh/site-functions/_sdepmd"
  install -d -m 0755 "$prefix/share/doc/sdepmd"
  install -m 0644 docs/*.md "$prefix/share/doc/sdepmd/"
  for unit in sdepmd-metrics.service sdepmd-metrics.timer; do
    { echo "$marker installed by scripts/install.sh from $repo; remove with scripts/install.sh --uninstall"
      sed "s#/usr/local/bin/sdepmd#$bin#g" "units/$unit"; } > "$unit_dir/$unit.tmp"
    mv "$unit_dir/$unit.tmp" "$unit_dir/$unit"
  done
  # Documentation= points at the docs under this prefix.
  for unit in epmd.socket epmd.service erlang-app@.service sdepmd-metrics.service sdepmd-metrics.timer; do
    sed -i "s#file:/usr/local/share/doc/sdepmd/#file:$prefix/share/doc/sdepmd/#" "$unit_dir/$unit"
  done
  command -v mandb >/dev/null && mandb -q "$prefix/share/man" >/dev/null 2>&1 || true
  say "man pages (man 8 sdepmd), bash and zsh completion, docs in $prefix/share; sdepmd-metrics.timer in $unit_dir (not enabled)"
}
operator_files
# --- end of operator files -------------------------------------------------------------------------------------------

if ! systemd_running; then
  say "systemd is not running as PID 1 here"
  if [ "$enable" = 1 ]; then
    say "running sdepmd in the foreground on port 4369 (Ctrl-C stops it)"
    exec "$bin"
  fi
  exit 0
fi

systemctl daemon-reload
# A running sdepmd: live upgrade. A running C epmd: adopted with its registrations. Never a restart.
"$repo/scripts/epmd-lifecycle.sh" take-over "$bin" $([ "$enable" = 1 ] && echo --start) || exit 1
if [ "$enable" = 1 ]; then
  systemctl enable epmd.socket
  if systemctl is-active --quiet epmd.socket; then
    say "epmd.socket is listening on port 4369; epmd.service starts on the first connection"
  else
    say "epmd.socket did not start: see systemctl status epmd.socket (is port 4369 held by another epmd? try: sdepmd doctor)"
    exit 1
  fi
fi
