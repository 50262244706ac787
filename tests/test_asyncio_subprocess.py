"""A Python asyncio program with timers and a subprocess (pipes, and the
loop's watching of its child) is checkpointed in the middle of its work and
carries on after a restore: every line comes back through the subprocess,
in order, and the child's exit is seen."""

import sys
import time

from conftest import REPO, Target, dump, restore


def test_an_asyncio_program_with_timers_and_a_subprocess(tmp_path):
    out = tmp_path / "out"
    t = Target(sys.executable, [REPO / "tests" / "targets" / "aiosub.py", out], tmp_path)
    try:
        deadline = time.monotonic() + 20
        while "READY" not in (out.read_text() if out.exists() else "") and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # some lines through already
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        deadline = time.monotonic() + 30
        while "DONE" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "DONE 100 cat=0" in out.read_text(), out.read_text() + t.output()
    finally:
        t.stop()
