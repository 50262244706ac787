"""Whole process trees and multi-threaded programs, dumped and restored."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TARGETS_SRC, checkpoint_restore, dump, reap_orphans, restore, run_hiber
from hiber.images.framing import encode_image, read_image
from hiber.images.imagedir import ImageDir
from hiber.images.magic import HEAD_RAW
from hiber.kernel import proc
from hiber.resources import core


def tree_pids(root):
    """Every process under root (inclusive), from /proc."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        pids.append(pid)
        for tid in proc.thread_ids(pid) if proc.exists(pid) else []:
            todo += proc.children(pid, tid)
    return pids


def relations(pid):
    s = proc.stat(pid)
    return (s.ppid, s.pgrp, s.session, s.state == "Z")


def test_family_tree(start_target, tmp_path):
    t = start_target("family", tmp_path / "family.txt")
    before = {pid: relations(pid) for pid in tree_pids(t.pid)}
    assert len(before) == 7 and sum(z for *_, z in before.values()) == 1
    images = tmp_path / "images"
    result = run_hiber("dump", "-t", t.pid, "-D", images, "-o", "dump.log")
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(proc.exists(p) for p in before) and time.monotonic() < deadline:
        reap_orphans()
        time.sleep(0.01)

    d = ImageDir(images)
    zombie = int(t.info["z"])
    zombie_core = d.read_one("CORE", zombie)
    assert zombie_core.tc.task_state == 2 and zombie_core.tc.exit_code == 7 << 8
    assert not d.exists("MM", zombie) and not zombie_core.HasField("thread_info")
    assert [p.pid for p in d.read("PSTREE")][0] == t.pid

    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode()
    after = {pid: relations(pid) for pid in tree_pids(t.pid)}
    # the root is now the tests' child (hiber exited); everything else as before
    assert {p: r for p, r in after.items() if p != t.pid} == \
        {p: r for p, r in before.items() if p != t.pid}
    assert after[t.pid][1:] == before[t.pid][1:]
    t.check()


def test_eight_threads_in_different_states(start_target, tmp_path):
    t = start_target("threads")
    tids = sorted(int(v) for k, v in t.info.items() if k.startswith("t"))
    checkpoint_restore(t, tmp_path / "images")
    assert sorted(proc.thread_ids(t.pid)) == sorted([t.pid, *tids])
    t.check()


@pytest.mark.timeout(240)
def test_twenty_cycles_without_drift(start_target, tmp_path):
    t = start_target("threads")
    shapes = []
    for cycle in range(20):
        images = tmp_path / f"cycle-{cycle}"
        checkpoint_restore(t, images)
        d = ImageDir(images)
        mm = d.read_one("MM", t.pid)
        fds = d.read("FDINFO", d.read_one("IDS", t.pid).files_id)
        shapes.append(([(v.start, v.end, v.prot) for v in mm.vmas],
                       [(e.fd, e.type) for e in fds], d.read("PSTREE")[0].threads[:]))
    assert all(shape == shapes[0] for shape in shapes), "the process drifted between cycles"
    assert len(os.listdir(f"/proc/{t.pid}/fd")) == len(shapes[0][1])
    t.check()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("program,processes", [
    ("pyprog.py", 2),   # threads and a child (multiprocessing)
    ("aioprog.py", 1),  # asyncio: an epoll instance, socket pairs, a pipe reader
])
def test_python_program_runs_on(tmp_path, program, processes):
    out = tmp_path / "prog.out"
    prog = subprocess.Popen([sys.executable, str(TARGETS_SRC / program), str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path)
    pid = prog.pid
    try:
        deadline = time.monotonic() + 30
        while (not out.exists() or "READY" not in out.read_text()) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # in the middle of its work
        images = tmp_path / "images"
        result = run_hiber("dump", "-t", pid, "-D", images, "-o", "dump.log")
        assert result.returncode == 0, result.stderr.decode()
        prog.wait(10)
        reap_orphans()
        assert len(ImageDir(images).read("PSTREE")) == processes
        result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
        assert result.returncode == 0, result.stderr.decode() + \
            (images / "restore.log").read_text()[-2000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        assert done and os.waitstatus_to_exitcode(status) == 0, out.read_text()
        assert out.read_text().splitlines()[-1] == "PASS"
    finally:
        for p in (pid,):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        prog.poll()
        reap_orphans()




def assert_images_whole(images):
    """Every image of the dir decodes (and encodes back to its bytes), and
    the process tree agrees with the per-task images: a core for each
    thread and for nothing else; mm, ids, fs, fds and pages for each live
    process and for no zombie. Returns pstree.img's entries and their cores."""
    d = ImageDir(images)
    for f in d.files():
        if f.type is not None and f.type.head != HEAD_RAW:
            path = images / f.name
            assert encode_image(read_image(path)) == path.read_bytes(), f.name
    tree = d.read("PSTREE")
    pids = [e.pid for e in tree]
    assert tree[0].ppid == 0 and len(set(pids)) == len(pids)
    for i, e in enumerate(tree[1:], 1):
        assert e.ppid in pids[:i], f"{e.pid}'s parent {e.ppid} is not listed before it"
    assert d.keys("CORE") == sorted(tid for e in tree for tid in e.threads)
    cores = {e.pid: d.read_one("CORE", e.pid) for e in tree}
    live = sorted(pid for pid, c in cores.items() if c.tc.task_state != core.TASK_DEAD)
    for kind in ("MM", "IDS", "FS", "PAGEMAP"):
        assert d.keys(kind) == live, kind
    for pid in live:
        d.pages_reader(d.pagemap(pid))  # the pages file holds what the pagemap says
        d.read("FDINFO", d.read_one("IDS", pid).files_id)
    return tree, cores


def churn_children(images, root):
    """The states of the children a dump of churn.c found; checks the dir
    whole and each child the kind churn.c makes."""
    tree, cores = assert_images_whole(images)
    assert tree[0].pid == root and len(tree[0].threads) == 1
    states = []
    for e in tree[1:]:  # each a child of the root, asleep or dead of _exit(3)
        assert e.ppid == root and e.threads[:] == [e.pid]
        c = cores[e.pid].tc
        assert c.task_state == core.TASK_ALIVE or \
            (c.task_state == core.TASK_DEAD and c.exit_code == 3 << 8), c
        states.append(c.task_state)
    return states


@pytest.mark.timeout(90)
def test_children_born_and_dying_during_the_dump(start_target, tmp_path):
    """Dumps of a tree that forks a child every millisecond, which lives up
    to 1.5 ms: some that leave it running (until they have met both live and
    dead children), then one that kills it. Each dump is checked whole, then
    restored in turn (its PIDs are free once the previous one has ended) and
    asked to check itself: every child it forked, those restored asleep or
    as zombies included, reaped with exit status 3."""
    t = start_target("churn")
    at_dump = t.out_path.read_bytes()  # its stdout has a size check: put back each time
    dirs, states = [], set()
    while len(dirs) < 4 or (states != {core.TASK_ALIVE, core.TASK_DEAD} and len(dirs) < 15):
        dirs.append(tmp_path / f"run-{len(dirs)}")
        dump(t, dirs[-1], "-R")
        states.update(churn_children(dirs[-1], t.pid))
    assert states == {core.TASK_ALIVE, core.TASK_DEAD}, \
        f"{len(dirs)} dumps did not meet both live and dead children"
    dirs.append(tmp_path / "last")
    dump(t, dirs[-1])
    churn_children(dirs[-1], t.pid)
    for images in dirs:
        t.out_path.write_bytes(at_dump)
        restore(images)
        assert t.alive() and proc.stat(t.pid).ppid == os.getpid()
        t.check()
        reap_orphans()


def test_stopped_process_comes_back_stopped(start_target, tmp_path):
    t = start_target("simple")
    os.kill(t.pid, signal.SIGSTOP)
    while proc.stat(t.pid).state != "T":
        time.sleep(0.001)
    images = tmp_path / "images"
    result = run_hiber("dump", "-t", t.pid, "-D", images)
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -signal.SIGKILL
    result = run_hiber("restore", "-D", images, "-d")
    assert result.returncode == 0, result.stderr.decode()
    deadline = time.monotonic() + 5
    while proc.stat(t.pid).state != "T" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.stat(t.pid).state == "T"
    os.kill(t.pid, signal.SIGCONT)
    t.check()


@pytest.mark.parametrize("target", [
    "zombies",  # zombies of every kind, and a group whose leader is gone
    "cow",      # private memory shared copy-on-write stays shared
])
def test_family_state_comes_back(start_target, tmp_path, target):
    t = start_target(target, tmp_path / f"{target}.data")
    checkpoint_restore(t, tmp_path / "images")
    t.check()
