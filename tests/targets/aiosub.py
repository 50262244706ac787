"""An asyncio program with timers and a subprocess: every 20 ms a timer
sends a numbered line through `cat`, run with asyncio.create_subprocess_exec
(pipes, and the loop's child watcher); the lines must come back in order.
The tests checkpoint and restore it in the middle of its work.

Usage: python3 aiosub.py OUTPUT_FILE
"""

import asyncio
import sys

ROUNDS = 100


async def main(path):
    cat = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE,
                                               stdout=asyncio.subprocess.PIPE)
    loop = asyncio.get_running_loop()
    sent = asyncio.Queue()

    def tick(i):
        cat.stdin.write(f"{i}\n".encode())
        sent.put_nowait(i)
        if i + 1 < ROUNDS:
            loop.call_later(0.02, tick, i + 1)

    loop.call_later(0.02, tick, 0)
    with open(path, "w") as out:
        out.write("READY\n")
        out.flush()
        for i in range(ROUNDS):
            line = await asyncio.wait_for(cat.stdout.readline(), 30)
            assert line == f"{i}\n".encode(), (i, line)
            assert await sent.get() == i
        cat.stdin.close()
        status = await asyncio.wait_for(cat.wait(), 30)
        out.write(f"DONE {ROUNDS} cat={status}\n")


asyncio.run(main(sys.argv[1]))
