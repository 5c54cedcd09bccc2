#!/usr/bin/env bash
# Installs the system packages sdepmd needs, with apt-get, skipping what is already there.
#   scripts/install-deps.sh           build and run: Node.js >= 20, libsystemd-dev, make, g++, python3 (node-gyp)
#   scripts/install-deps.sh --test    also the test peers: erlang-base (erl and the C epmd), iproute2, util-linux
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
if [ "$want_test" = 1 ]; then
  have erl || need+=(erlang-base)
  have ip || need+=(iproute2)
  have unshare || need+=(util-linux)
  have nsenter || need+=(util-linux)
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
if [ "$major" -lt 20 ]; then
  echo "sdepmd: Node.js >= 20 is required, found $(node --version)" >&2
  exit 1
fi
