"""Event fds: counter, semaphore mode, flags and sharing come back
(resources/files/eventfd.py: one module and one line in kinds.py)."""


import pytest

from conftest import dump_and_kill, run_hiber
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(120)


def test_eventfds_come_back(start_target, tmp_path):
    t = start_target("events")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    efds = {(e.efd.counter, e.efd.semaphore) for e in ImageDir(images).read_optional("FILES")
            if e.HasField("efd")}
    assert efds == {(3, True), (0x123456789, False)}  # C shares B's entry
    shown = run_hiber("show", images).stdout.decode()
    assert "eventfd (count 3, semaphore)" in shown, shown
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode()
    t.check()


def test_a_stub_failure_is_reported_with_its_reason(start_target, tmp_path):
    """A counter no eventfd can hold fails in the root stub, after it moved
    its report pipe above the tree's fds: the reason still reaches hiber."""
    t = start_target("events")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    d = ImageDir(images)
    entries = list(d.read_optional("FILES"))
    for e in entries:
        if e.HasField("efd"):
            e.efd.counter = (1 << 64) - 1
    d.write("FILES", None, entries)
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    message = result.stderr.decode()
    assert result.returncode == 1 and message.count("\n") == 1, message
    assert f"setting up PID {t.pid} failed: OSError" in message, message
    assert not t.alive()
