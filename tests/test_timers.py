"""Timers of every kind, in their hard states (targets/timerkinds.c): CPU-time
itimers and POSIX timers on every clock, one-shots with their remaining
time, disarmed and SIGEV_NONE timers, a timer whose signal is pending at the
dump, and timer ids with gaps (resources/timers.py)."""

import pytest

from conftest import dump_and_kill, run_hiber
from hiber.images.imagedir import ImageDir
from hiber.kernel import proc

pytestmark = pytest.mark.timeout(120)


def posix_timers(pid):
    """/proc/PID/timers as {id: (signal/sival, notify, clock)}."""
    timers, current = {}, None
    for line in proc.read_text(pid, "timers").splitlines():
        key, _, value = line.partition(": ")
        if key == "ID":
            current = timers[int(value)] = {}
        else:
            current[key] = value
    return {i: (t["signal"], t["notify"], int(t["ClockID"])) for i, t in timers.items()}


@pytest.mark.parametrize("periodic", ["virtual", "prof"])
def test_every_timer_kind_survives(start_target, tmp_path, periodic):
    t = start_target("timerkinds", periodic)
    before = posix_timers(t.pid)
    assert {int(i) for i in t.info["ids"].split(",")[:3]} <= before.keys()
    assert {0, 2, int(t.info["next"]) - 1}.isdisjoint(before)  # the deleted ones
    images = tmp_path / "images"
    dump_and_kill(t, images)
    # the last timer made was deleted: the image says which id comes next
    core = ImageDir(images).read_one("CORE", t.pid)
    assert core.tc.timers.next_posix_timer_id == int(t.info["next"])
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode() + \
        (images / "restore.log").read_text()[-2000:]
    assert posix_timers(t.pid) == before
    t.check(timeout=60)


def test_a_dump_leaves_the_timers_as_they_were(start_target, tmp_path):
    """The dump makes and deletes a timer to learn the next id: a process
    left running gets the id it would have got all the same."""
    t = start_target("timerkinds", "virtual")
    before = posix_timers(t.pid)
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-R", "-o", "dump.log")
    assert result.returncode == 0, result.stderr.decode()
    assert posix_timers(t.pid) == before
    t.check(timeout=60)
