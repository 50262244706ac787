"""Owners of open files (F_SETOWN_EX, F_SETSIG): dumped in each file entry's
fown, given back once the tree is rebuilt, refused when the owner is
neither restored nor running (issue 9 section 3)."""

import signal
import subprocess

import pytest

from conftest import dump_and_kill, run_hiber
from hiber.images.imagedir import ImageDir
from hiber.resources.files import owners

pytestmark = pytest.mark.timeout(120)


def test_owners_and_signals_come_back(start_target, tmp_path):
    t = start_target("owners", tmp_path / "fifo")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    fowns = [e.reg.fown if e.HasField("reg") else e.pipe.fown
             for e in ImageDir(images).read_optional("FILES")
             if e.HasField("reg") or e.HasField("pipe")]
    owned = {(f.pid_type, f.signum, f.euid) for f in fowns if f.pid}
    assert {(owners.F_OWNER_PID, signal.SIGUSR1, 0), (owners.F_OWNER_PGRP, 0, 0),
            (owners.F_OWNER_TID, signal.SIGRTMIN + 3, 65534),
            (owners.F_OWNER_PID, signal.SIGRTMIN + 4, 0)} <= owned
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode()
    t.check()


def test_an_owner_nobody_brings_back_is_refused(start_target, tmp_path):
    foreign = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t = start_target("owners", tmp_path / "fifo", foreign.pid)
        images = tmp_path / "images"
        dump_and_kill(t, images)
    finally:
        foreign.kill()
        foreign.wait()
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    message = result.stderr.decode()
    assert result.returncode == 1 and message.count("\n") == 1, message
    assert f"process {foreign.pid}" in message and "F_SETOWN" in message, message
    assert not t.alive()
