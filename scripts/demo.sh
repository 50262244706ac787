#!/usr/bin/env bash
# The hiber demo: checkpoint a live counting process, restore it, and watch
# it count on from where it was, with the same PID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d /tmp/hiber-demo.XXXXXX)
counter_pid=""
restore_pid=""
cleanup() {
    [ -n "$counter_pid" ] && kill -9 "$counter_pid" 2>/dev/null || true
    [ -n "$restore_pid" ] && wait "$restore_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/counter" demo/counter.c
echo "== 1. start a counter (its own session, output in counter.log)"
setsid "$work/counter" "$work/counter.log" </dev/null >/dev/null 2>&1 &
counter_pid=$!
sleep 1.5
tail -n 3 "$work/counter.log"

echo
echo "== 2. hiber dump -t $counter_pid -D images   (checkpoint; the process is killed)"
hiber dump -t "$counter_pid" -D "$work/images" -o dump.log
{ wait "$counter_pid" || true; } 2>/dev/null
dumped_pid=$counter_pid
counter_pid=""
ls -1 "$work/images" | tr '\n' ' '; echo
if kill -0 "$dumped_pid" 2>/dev/null; then echo "process $dumped_pid still runs?"; else
    echo "process $dumped_pid is gone"; fi

echo
echo "== 3. two seconds later: hiber restore -D images"
sleep 2
hiber restore -D "$work/images" -o restore.log --pidfile "$work/restored.pid" &
restore_pid=$!
while [ ! -s "$work/restored.pid" ]; do sleep 0.05; done
echo "restored PID: $(cat "$work/restored.pid")"
sleep 1.5
echo "it counts on from where it was:"
tail -n 6 "$work/counter.log"

echo
echo "== 4. hiber show images   (what the checkpoint holds)"
hiber show "$work/images" | head -n 12
echo "   ..."
kill -9 "$(cat "$work/restored.pid")"
wait "$restore_pid" 2>/dev/null || true
restore_pid=""
echo
echo "done: the counter was checkpointed, killed, and restored with its PID, memory and open file."
