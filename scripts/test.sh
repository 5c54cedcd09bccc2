#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what it needs (as root: apt-get for erlang-base,
# libsystemd-dev, iproute2, debootstrap, systemd-container; npm ci), type-checks, lints and
# format-checks every TS and JS file, builds, runs every test (unit, integration, differential against the C epmd, real OTP nodes, the
# namespaced-systemd end-to-end suites), the benchmark once in its short smoke mode, then the distro matrix: stock
# Debian 12 and Debian 13 booted for real (test/platform/debian12.manual.ts, debian13.manual.ts) and the lifecycle
# matrix on Debian 13's systemd 257 (test/platform/lifecycle-trixie.manual.ts), one after the other (see
# docs/platforms.md). The matrix needs root; without it, or with SDEPMD_PLATFORMS=none, it is skipped with its reason
# (CI=true: it fails).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
. scripts/node-env.sh
scripts/ensure-npm.sh
npm run --silent typecheck
npm run --silent lint
npm run --silent format:check
t0=$(date +%s)
npm test
t1=$(date +%s)
npm run --silent bench -- --short
t2=$(date +%s)
# One guest at a time: nspawn puts every guest at /payload of this machine's cgroup tree, so two guests at once
# would share unit cgroups, and each one's systemd would kill the other's processes (docs/platforms.md).
npx jest --ci --runInBand --testMatch '**/test/platform/*.manual.ts'
t3=$(date +%s)
echo "test.sh: npm test $((t1 - t0)) s, bench $((t2 - t1)) s, distro matrix $((t3 - t2)) s"
