# Sourced by the other scripts. Native addons (ours, and any dependency's) are built with node-gyp against the
# running Node's headers. Left alone, node-gyp downloads those headers from nodejs.org, which fails on firewalled
# hosts. Debian's libnode-dev, and NodeSource's nodejs, install them under /usr/include/node: when the headers next
# to the running node match its version exactly, point node-gyp at them (npm_config_nodedir, which npm and node-gyp
# both read). An explicit npm_config_nodedir wins.
sdepmd_local_node_headers() {
  local node_bin prefix d h want got
  node_bin=$(command -v node 2>/dev/null) || return 1
  want=$(node -p 'process.versions.node' 2>/dev/null) || return 1
  prefix=$(dirname "$(dirname "$(readlink -f "$node_bin")")")
  for d in "$prefix" /usr /usr/local; do
    h="$d/include/node/node_version.h"
    [ -f "$h" ] && [ -f "$d/include/node/common.gypi" ] || continue
    got=$(awk '/^#define NODE_(MAJOR|MINOR|PATCH)_VERSION /{v[$2]=$3} END{print v["NODE_MAJOR_VERSION"]"."v["NODE_MINOR_VERSION"]"."v["NODE_PATCH_VERSION"]}' "$h")
    if [ "$got" = "$want" ]; then echo "$d"; return 0; fi
  done
  return 1
}
if [ -z "${npm_config_nodedir:-}" ]; then
  if sdepmd_nodedir=$(sdepmd_local_node_headers); then export npm_config_nodedir="$sdepmd_nodedir"; fi
  unset sdepmd_nodedir
fi
