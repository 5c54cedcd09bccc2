#!/usr/bin/env bash
# Installs the system packages sdepmd needs, with apt-get, skipping what is already there.
#   scripts/install-deps.sh           build and run: Node.js >= 18.20 (Debian 12's nodejs works), npm, Node's headers
#                                     (Debian's libnode-dev), libsystemd-dev, make, g++, python3 (node-gyp)
#   scripts/install-deps.sh --test    also the test peers: erlang-base (erl and the C epmd), iproute2, util-linux,
#                                     debootstrap and systemd-container (the Debian 12/13 matrix)
set -euo pipefail
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have node || need+=(nodejs)
have npm || need+=(npm)
[ -e /usr/include/systemd/sd-daemon.h ] || need+=(libsystemd-dev)
have make || need+=(make)
have g++ || need+=(g++)
have python3 || need+=(python3)
# Node's headers for node-gyp, so that nothing is downloaded: Debian ships them in libnode-dev (NodeSource's nodejs
# carries its own). Only when node is, or will be, Debian's /usr/bin/node and the matching headers are missing.
. "$(dirname "$0")/node-env.sh"
if ! have node; then
  need+=(libnode-dev)
elif [ -z "${npm_config_nodedir:-}" ] && have dpkg-query \
  && dpkg-query -S "$(readlink -f "$(command -v node)")" 2>/dev/null | grep -q '^nodejs:'; then
  need+=(libnode-dev)
fi
if [ "$want_test" = 1 ]; then
  have erl || need+=(erlang-base)
  have ip || need+=(iproute2)
  have unshare || need+=(util-linux)
  have nsenter || need+=(util-linux)
  # The distro matrix (test/platform): stock Debian roots, booted with systemd-nspawn.
  have debootstrap || need+=(debootstrap)
  have systemd-nspawn || need+=(systemd-container)
fi
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "sdepmd: missing packages: ${need[*]} (install them as root with apt-get)" >&2
    exit 1
  fi
  echo "sdepmd: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
minor=$(node -p 'process.versions.node.split(".")[1]')
if [ "$major" -lt 18 ] || { [ "$major" = 18 ] && [ "$minor" -lt 20 ]; }; then
  echo "sdepmd: Node.js >= 18.20 is required, found $(node --version)" >&2
  exit 1
fi
