#!/usr/bin/env bash
# The whole test suite, from a fresh machine: install, then run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest -p no:cacheprovider "$@"
