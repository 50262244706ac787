#!/usr/bin/env bash
# Installs what hiber and its tests need on a fresh Debian machine, as root.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v crit >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1; then
    # crit (from Debian's criu package) checks that CRIU's tools read our images;
    # gcc builds the small C programs the tests checkpoint
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq criu gcc libc6-dev >/dev/null
fi

if ! command -v memcached >/dev/null 2>&1; then
    # a real server the TCP connection tests checkpoint (tests/test_tcp_servers.py);
    # its own service is not wanted running
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq memcached >/dev/null
    (systemctl disable --now memcached || service memcached stop) >/dev/null 2>&1 || true
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
