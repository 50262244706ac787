"""Images a real CRIU 4.2 made of a running process tree, restored by hiber
(tests/data/criu-made: the program, and in its README how the images were
made). CI cannot build CRIU, so the images are test data; the program is
built again here, and the test runs only where that gives the very binary,
libc and loader the images recorded (build-ids), with their PIDs free."""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import REPO, reap_orphans, restore_refused, run_hiber
from hiber.images.framing import encode_image, read_image
from hiber.images.imagedir import ImageDir
from hiber.kernel import proc
from hiber.resources.core import enabled_xfeatures
from hiber.resources.files.regular import build_id_words
from test_task_state import edit_core

CRIU_MADE = REPO / "tests" / "data" / "criu-made"
WORKDIR = "/tmp/hiber-criu-made"             # where make_images.py ran the program
BINARY = f"{WORKDIR}/ticker"
OUTPUT = f"{WORKDIR}/ticker.out"              # its stdout, appended to
ROOT, CHILD, READER = 31400, 31401, 31402     # as make_images.py started it
TICK = re.compile(r"^tick (\d+) beats (\d+)$", re.M)


def build_the_program():
    """gcc -O2 ticker.c, as make_images.py built it, to the path the images
    name (through a rename: an old copy may still be mapped somewhere)."""
    os.makedirs(WORKDIR, exist_ok=True)
    fresh = f"{BINARY}.{os.getpid()}"
    try:
        subprocess.run(["gcc", "-O2", "-o", fresh, "ticker.c"], cwd=CRIU_MADE, check=True,
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot build tests/data/criu-made/ticker.c here: {e}")
    os.replace(fresh, BINARY)


def files_with_build_ids(d):
    return [f.reg for f in d.read("FILES") if f.HasField("reg") and f.reg.build_id]


def images_for_this_machine(tmp_path):
    """A copy of the images, once this machine is checked to have what they
    recorded; a skip naming what differs otherwise."""
    build_the_program()
    images = tmp_path / "images"
    shutil.copytree(CRIU_MADE / "images", images)
    d = ImageDir(images)
    for reg in files_with_build_ids(d):
        here = build_id_words(reg.name)
        if here != list(reg.build_id):
            what = "gcc" if reg.name == BINARY else "glibc"
            pytest.skip(f"{reg.name} here is not the file CRIU dumped (build-id "
                        f"{_hex(here)}, images {_hex(reg.build_id)}): this machine's {what} "
                        "differs from the one in tests/data/criu-made/README.md")
    lacking = set()
    for tid in (ROOT, CHILD, READER):
        xstate_bv = d.read_one("CORE", tid).thread_info.fpregs.xsave.xstate_bv
        lacking |= {bit for bit in range(64) if xstate_bv >> bit & 1} - enabled_xfeatures()
    if lacking:
        pytest.skip(f"this CPU lacks xstate components {sorted(lacking)} the images use")
    for entry in d.read("PSTREE"):
        for tid in entry.threads:
            if proc.exists(tid):
                pytest.skip(f"PID {tid}, which the images give back, is in use here")
    # the output as it was at the dump: the program appends to it
    shutil.copy(CRIU_MADE / "ticker.out", OUTPUT)
    return images


def _hex(words):
    return "".join(w.to_bytes(4, "little").hex() for w in words) if words else None


def kill_and_reap(pids, timeout=10):
    """SIGKILL each restored process and reap it: after hiber -d exits they
    are the tests' (child subreaper), the root at once, the child when its
    parent dies."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(proc.exists(p) for p in pids) and time.monotonic() < deadline:
        reap_orphans()
        time.sleep(0.01)
    reap_orphans()
    assert not any(proc.exists(p) for p in pids), "a restored process outlived SIGKILL"


def output():
    with open(OUTPUT) as f:
        return f.read()


def wait_for(condition, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition(output())
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no {what} after {timeout} s:\n{output()[-2000:]}")


def test_every_criu_made_image_reads_and_writes_back_the_same_bytes():
    """Needs nothing of this machine: the reader and writer on CRIU's output."""
    paths = [p for p in sorted((CRIU_MADE / "images").iterdir())
             if p.suffix == ".img" and not p.name.startswith("pages-")]
    assert len(paths) >= 20
    for path in paths:
        assert encode_image(read_image(path)) == path.read_bytes(), path.name


@pytest.mark.timeout(60)
def test_criu_made_tree_runs_on_under_hiber(tmp_path):
    images = images_for_this_machine(tmp_path)
    at_dump = TICK.findall(output())
    last_tick, last_beats = map(int, at_dump[-1])
    try:
        result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log", timeout=50)
        assert result.returncode == 0, result.stderr.decode() + \
            (images / "restore.log").read_text()[-2000:]
        # the tree as CRIU dumped it: PIDs, TIDs, parent, session, group
        assert sorted(proc.thread_ids(ROOT)) == [ROOT, READER]
        root, child = proc.stat(ROOT), proc.stat(CHILD)
        assert (root.ppid, root.session, root.pgrp) == (os.getpid(), ROOT, ROOT)
        assert (child.ppid, child.session, child.pgrp) == (ROOT, ROOT, ROOT)
        assert "ID: 0\n" in proc.read_text(ROOT, "timers")  # the timer keeps its id

        # it counts on from the memory CRIU saved: the next line is the one
        # after the last line written before the dump (tick counts by 25)
        def new_ticks(text):
            return [tuple(map(int, t)) for t in TICK.findall(text)[len(at_dump):]]
        first_tick, first_beats = wait_for(new_ticks, "tick line from the restored tree")[0]
        assert last_tick + 25 <= first_tick <= last_tick + 27, output()
        assert first_beats > last_beats
        wait_for(lambda text: len(new_ticks(text)) >= 3, "three tick lines")

        # its own check: memory, the queued pipe data, the child and its
        # heartbeats through the other pipe, the thread, the timer, handlers
        lines_before = output().count("\n")
        os.kill(ROOT, signal.SIGUSR1)
        verdict = wait_for(lambda text: [line for line in text.splitlines()[lines_before:]
                                         if line.startswith(("PASS", "FAIL"))],
                           "verdict of the program's check")
        assert verdict == ["PASS"], output()[-2000:]
    finally:
        kill_and_reap([ROOT, CHILD])


@pytest.mark.timeout(60)
def test_criu_made_registers_this_cpu_lacks_are_refused(tmp_path):
    """CRIU's own register image, claiming a component this CPU has not
    (as on a move from a bigger CPU): one line, nothing created."""
    images = images_for_this_machine(tmp_path)
    lacking = [c for c in (5, 6, 7, 17, 18, 3, 4) if c not in enabled_xfeatures()]
    if not lacking:
        pytest.skip("this CPU has AVX-512, AMX and MPX")

    def uses_it(entry):
        entry.thread_info.fpregs.xsave.xstate_bv |= 1 << lacking[0]
    edit_core(images, READER, uses_it)
    name = {5: "AVX-512", 6: "AVX-512", 7: "AVX-512", 3: "MPX", 4: "MPX"}.get(lacking[0], "AMX")
    message = restore_refused(images, f"core-{READER}.img: thread {READER} was using {name} registers")
    assert "this CPU does not have" in message
    assert not any(proc.exists(p) for p in (ROOT, CHILD, READER))
