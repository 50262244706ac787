"""An asyncio program (an epoll instance, a socketpair self-pipe) that
works for a few seconds and then writes its result: a reader callback on
a pipe, a stream over a socket pair echoing numbered lines, and sleeps.
The tests checkpoint and restore it in the middle of its work.

Usage: python3 aioprog.py OUTPUT_FILE
"""

import asyncio
import os
import socket
import sys

ROUNDS = 60


async def main(out):
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    got = []
    loop.add_reader(read_fd, lambda: got.append(os.read(read_fd, 100)))
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    echo_reader, echo_writer = await asyncio.open_connection(sock=theirs)
    out.write("READY\n")
    echoed = 0
    for i in range(ROUNDS):
        os.write(write_fd, b"x")
        writer.write(f"{i}\n".encode())
        await writer.drain()
        line = await echo_reader.readline()
        echo_writer.write(line)
        await echo_writer.drain()
        echoed += int(await reader.readline()) == i
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.05)
    ok = echoed == ROUNDS and len(b"".join(got)) == ROUNDS
    out.write("PASS\n" if ok else f"FAIL echoed {echoed} pipe {len(b''.join(got))}\n")


if __name__ == "__main__":
    with open(sys.argv[1], "w", buffering=1) as output:
        asyncio.run(main(output))
