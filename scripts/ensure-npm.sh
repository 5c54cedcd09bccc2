#!/usr/bin/env bash
# Runs `npm ci` unless node_modules already matches package-lock.json (by content, not by file dates, so that a
# copied or freshly checked-out tree does not trigger a network install it does not need).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/node-env.sh
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.sdepmd-lock-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
# A tree installed some other way (npm install): accept it when npm finds it complete and consistent.
if [ -d node_modules ] && npm ls --all >/dev/null 2>&1; then echo "$want" > "$stamp"; exit 0; fi
echo "sdepmd: installing npm dependencies (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
