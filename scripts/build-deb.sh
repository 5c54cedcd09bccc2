#!/usr/bin/env bash
# Builds the Debian package sdepmd_<version>_<arch>.deb from this checkout, with dpkg-deb:
#
#   scripts/build-deb.sh [--version V] [--out DIR]     (default: package.json's version, the checkout's root)
#
# It builds sdepmd (as scripts/install.sh does: apt-get for what is missing, npm ci, tsc, the native addon against
# the local Node headers) and packs the built code, the production node_modules and the native addon under
# /usr/lib/sdepmd, /usr/bin/sdepmd, and the units as /usr/lib/systemd/system/epmd.{socket,service}, which take over
# erlang-base's units of the same names through dpkg diversions (packaging/deb/: preinst, postinst, prerm, postrm).
# Also the man pages, the bash and zsh completions, the docs and the (not enabled) metrics timer.
# Depends: nodejs (>= 18.20), libsystemd0, iproute2 (ss: which programs hold registrations, at removal). sdepmd's
# addon is N-API, so one package runs on Debian 12's Node 18 and Debian 13's Node 20. If a dependency ships a
# Node-ABI-specific addon, the package also depends on the libnode<ABI> it was built against (Debian names libnode
# after the ABI: libnode108 is Node 18, libnode115 Node 20).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
version=$(node -p 'require("./package.json").version' 2>/dev/null || true)
out="$repo"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="${2:?--version needs a value}"; shift ;;
    --out) out="${2:?--out needs a directory}"; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "sdepmd build-deb: $*" >&2; }
command -v dpkg-deb >/dev/null || { say "dpkg-deb is missing (apt-get install dpkg)"; exit 1; }

scripts/install-deps.sh
. scripts/node-env.sh
version=${version:-$(node -p 'require("./package.json").version')}
arch=$(dpkg --print-architecture)
scripts/ensure-npm.sh
say "building $version for $arch on Node $(node --version)"
npm run --silent build

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
lib="$stage/usr/lib/sdepmd"
mkdir -p "$lib" "$stage/usr/bin" "$stage/usr/lib/systemd/system" "$stage/usr/share/sdepmd" "$stage/usr/share/doc/sdepmd" "$stage/DEBIAN"
cp -a package.json package-lock.json bin dist node_modules "$lib/"
# The addons this checkout builds (a native/NAME/ with a binding.gyp; a stale build/ of a removed addon is skipped).
for gyp in native/*/binding.gyp; do
  dir=$(dirname "$gyp")
  found=0
  for addon in "$dir"/build/Release/*.node; do
    [ -e "$addon" ] || continue
    mkdir -p "$lib/$(dirname "$addon")"
    cp -a "$addon" "$lib/$addon"
    found=1
  done
  [ "$found" = 1 ] || { say "$dir was not built ($dir/build/Release/*.node)"; exit 1; }
done
(cd "$lib" && npm prune --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
rm -f "$lib/node_modules/.sdepmd-lock-sha256" "$lib/node_modules/.package-lock.json"
# Dependencies' addon build trees: keep the built .node files only.
find "$lib/node_modules" -type d \( -name obj.target -o -name .deps \) -path '*/build/*' -prune -exec rm -rf {} +
find "$lib/node_modules" -path '*/build/*' -type f \( -name '*.mk' -o -name Makefile -o -name '*.gypi' -o -name '*.o' \) -delete
ln -s ../lib/sdepmd/bin/sdepmd "$stage/usr/bin/sdepmd"
# The units (the metrics timer is shipped, not enabled: systemctl enable --now sdepmd-metrics.timer).
for unit in epmd.socket epmd.service erlang-app@.service sdepmd-metrics.service sdepmd-metrics.timer; do
  [ -f "units/$unit" ] || continue
  sed -e 's#/usr/local/bin/sdepmd#/usr/bin/sdepmd#g; s#/usr/local/share/#/usr/share/#g' \
    -e "s|^# Installed to /etc/systemd/system, where it overrides .*|# Installed by the sdepmd package, which diverts erlang-base's unit of the same name (dpkg-divert --list).|" \
    "units/$unit" > "$stage/usr/lib/systemd/system/$unit"
done
cp units/epmd-dependency.conf units/epmd-socket-dependency.conf units/sdepmd-systemd-254.conf "$stage/usr/share/sdepmd/"
# The transitions of epmd itself (take-over, release, hand-back), shared with scripts/install.sh; the maintainer
# scripts run it, so that installing over a running epmd and removing never restart epmd.
install -m 0755 scripts/epmd-lifecycle.sh "$stage/usr/share/sdepmd/epmd-lifecycle.sh"
cp README.md docs/*.md "$stage/usr/share/doc/sdepmd/"
printf 'sdepmd\nLicense: %s\n' "$(node -p 'require("./package.json").license')" > "$stage/usr/share/doc/sdepmd/copyright"
# The man pages and shell completions, where the checkout has them (the same paths scripts/install.sh uses, under /usr).
for page in man/*.[1-8]; do
  [ -f "$page" ] || continue
  sec="${page##*.}"; mkdir -p "$stage/usr/share/man/man$sec"
  gzip -9n < "$page" > "$stage/usr/share/man/man$sec/$(basename "$page").gz"
done
if [ -f completion/sdepmd.bash ]; then
  install -D -m 0644 completion/sdepmd.bash "$stage/usr/share/bash-completion/completions/sdepmd"
fi
if [ -f completion/_sdepmd ]; then
  install -D -m 0644 completion/_sdepmd "$stage/usr/share/zsh/vendor-completions/_sdepmd"
fi
chmod -R u=rwX,go=rX "$stage/usr"

# N-API addons load on any Node >= the N-API version they use; anything else is tied to this Node's ABI.
depends="nodejs (>= 18.20), libsystemd0, iproute2"
abi_bound=()
while IFS= read -r -d '' addon; do
  grep -q napi_register_module_v1 "$addon" || abi_bound+=("${addon#"$lib/"}")
done < <(find "$lib" -name '*.node' -type f -print0)
if [ "${#abi_bound[@]}" -gt 0 ]; then
  abi=$(node -p 'process.versions.modules')
  depends="$depends, libnode$abi"
  say "not N-API (tied to Node ABI $abi, so the package depends on libnode$abi): ${abi_bound[*]}"
fi

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: sdepmd
Version: $version
Architecture: $arch
Maintainer: sdepmd maintainers <sdepmd@localhost>
Depends: $depends
Section: net
Priority: optional
Installed-Size: $installed_size
Homepage: https://www.erlang.org/doc/man/epmd.html
Description: systemd-native Erlang Port Mapper Daemon (epmd)
 sdepmd replaces OTP's C epmd byte for byte and runs as a socket-activated,
 hardened epmd.service that Erlang applications depend on, so that stopping
 one application no longer takes epmd (and every other node's registration)
 with it. It takes over erlang-base's epmd.socket and epmd.service (dpkg
 diversions) and gives them back when removed.
CONTROL
cp packaging/deb/preinst packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
chmod 755 "$stage"/DEBIAN/p*
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
mkdir -p "$out"
deb="$out/sdepmd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1); Depends: $depends)"
echo "$deb"
