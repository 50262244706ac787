"""Real TCP servers, each checkpointed with --tcp-established while a client
outside the tree holds a connection open: the server comes back with the
same PID, and the same client on the same connection goes on working (what
it sent while the server was gone is answered too).

    asyncio   a Python asyncio echo server (stdlib: an epoll instance and
              TCP sockets)
    memcached Debian's memcached (scripts/setup.sh installs it): a value
              stored before the checkpoint is read back after it, on the
              same connection
"""

import shutil
import socket
import sys
import time

import pytest

from conftest import Target, dump, restore

pytestmark = pytest.mark.timeout(180)

ECHO_SERVER = """
import asyncio
async def echo(reader, writer):
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print("READY port=%d" % server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def ask(conn, line):
    conn.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        data = conn.recv(100)
        assert data, f"the server closed the connection (after {got!r})"
        got += data
    return got


def test_an_asyncio_server_keeps_its_client(tmp_path):
    t = Target(sys.executable, ["-c", ECHO_SERVER], tmp_path)
    try:
        t.wait_ready()
        with socket.create_connection(("127.0.0.1", int(t.info["port"])), timeout=30) as c:
            assert ask(c, b"before\n") == b"BEFORE\n"
            dump(t, tmp_path / "images", "--tcp-established")
            c.sendall(b"while away\n")  # kept by the lock, sent again by our TCP
            restore(tmp_path / "images", "--tcp-established")
            got = b""
            while got.count(b"\n") < 1:
                got += c.recv(100)
            assert got == b"WHILE AWAY\n"
            assert ask(c, b"after\n") == b"AFTER\n"
            # a new client too
            with socket.create_connection(("127.0.0.1", int(t.info["port"])), timeout=30) as d:
                assert ask(d, b"new\n") == b"NEW\n"
    finally:
        t.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("memcached"), reason="memcached is not installed "
                    "(scripts/setup.sh installs it)")
def test_memcached_keeps_its_client_and_its_data(tmp_path):
    port = free_port()
    t = Target(shutil.which("memcached"), ["-U", "0", "-l", "127.0.0.1", "-p", port,
                                            "-u", "root", "-t", "2"], tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and t.proc.poll() is None, t.output()
                time.sleep(0.05)
        with c:
            assert ask(c, b"set greeting 0 0 5\r\nhello\r\n") == b"STORED\r\n"
            dump(t, tmp_path / "images", "--tcp-established")
            restore(tmp_path / "images", "--tcp-established")
            c.sendall(b"get greeting\r\n")
            got = b""
            while not got.endswith(b"END\r\n"):
                data = c.recv(100)
                assert data, f"memcached closed the connection (after {got!r})"
                got += data
            assert got == b"VALUE greeting 0 5\r\nhello\r\nEND\r\n"
            assert ask(c, b"incr nothing 1\r\n") == b"NOT_FOUND\r\n"
    finally:
        t.stop()
