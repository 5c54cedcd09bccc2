#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what it needs (as root: apt-get for erlang-base,
# libsystemd-dev, iproute2; npm ci), type-checks and lints every TS and JS file, builds, runs every
# test (unit, integration, differential against the C epmd, real OTP nodes, the namespaced-systemd end-to-end
# suites), then the benchmark once in its short smoke mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
. scripts/node-env.sh
scripts/ensure-npm.sh
npm run --silent typecheck
npm run --silent lint
npm test
npm run --silent bench -- --short
