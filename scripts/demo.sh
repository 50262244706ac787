#!/usr/bin/env bash
# A short tour of hiber: read real CRIU 4.2 images, summarise and decode them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
golden="${HIBER_SHARED:-../shared}/golden/criu-4.2/multi/images"

echo "== hiber show: what is in an image dir CRIU 4.2 wrote"
hiber show "$golden"
echo
echo "== hiber decode --pretty: the process tree image, as crit shows it"
hiber decode --pretty -i "$golden/pstree.img"
echo
echo "== hiber encode: JSON back to the very same bytes"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hiber decode -i "$golden/core-2433.img" -o "$tmp/core.json"
hiber encode -i "$tmp/core.json" -o "$tmp/core-2433.img"
cmp "$golden/core-2433.img" "$tmp/core-2433.img" && echo "core-2433.img: identical after decode+encode"
