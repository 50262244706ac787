"""A memfd holding a program can still be exec'ed after a restore, as
before: its read-write fd is memfd_create's own file, which the kernel does
not count as a writer (an open by path would make exec fail, ETXTBSY)."""

import os
import signal
import sys
import time

from conftest import Target, dump, restore

RUNNER = """
import os, signal, subprocess, sys, time
fd = os.memfd_create("script", 0)
os.write(fd, b"#!/bin/sh\\necho from-memfd\\n")
def run():
    pid = os.fork()
    if pid == 0:
        out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(out, 1)
        os.execv(f"/proc/self/fd/{fd}", ["script"])
    os.waitpid(pid, 0)
run()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
run()
time.sleep(60)
"""


def test_a_memfd_program_runs_after_a_restore(tmp_path):
    out = tmp_path / "out"
    t = Target(sys.executable, ["-c", RUNNER, out], tmp_path)
    try:
        t.wait_ready()
        assert out.read_text() == "from-memfd\n"
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        os.kill(t.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while out.read_text().count("from-memfd") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.read_text() == "from-memfd\n" * 2, t.output()
    finally:
        t.stop()
