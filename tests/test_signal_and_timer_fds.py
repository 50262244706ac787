"""Signal fds and timer fds come back with their masks, clocks, remaining
times, intervals and unread expirations (resources/files/signalfd.py and
timerfd.py: a module each and a line each in kinds.py)."""

import pytest

from conftest import dump_and_kill, run_hiber
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(120)


def test_signal_and_timer_fds_come_back(start_target, tmp_path):
    t = start_target("timersig")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    entries = list(ImageDir(images).read_optional("FILES"))
    masks = [e.sgfd.sigmask for e in entries if e.HasField("sgfd")]
    assert masks == [(1 << (12 - 1)) | (1 << (36 - 1))]  # SIGUSR2, SIGRTMIN+2
    timers = sorted((e.tfd.clockid, e.tfd.ticks, e.tfd.settime_flags,
                     e.tfd.isec * 10**9 + e.tfd.insec) for e in entries if e.HasField("tfd"))
    assert timers == [(0, 0, 1, 0), (1, 0, 0, 100_000_000), (1, 1, 0, 0),
                      (1, 1, 0, 50_000_000)]  # the last: fired, its ticks unread
    shown = run_hiber("show", images).stdout.decode()
    assert "signalfd (signals 12,36)" in shown and "1 tick(s) unread" in shown, shown
    result = run_hiber("restore", "-D", images, "-d", "-o", "restore.log")
    assert result.returncode == 0, result.stderr.decode()
    t.check()
