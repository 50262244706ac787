"""uprobes, the whole story: dump refuses without --allow-uprobes and skips
the [uprobes] area with it; restore refuses without it; with it, a process
whose probes are active keeps hitting them, and one whose probes are gone
dies of SIGTRAP at its first restored breakpoint, as documented."""

import os
import signal
import time

from conftest import TARGETS_BIN, reap_orphans, run_hiber
from hiber.images import vma as V
from hiber.images.imagedir import ImageDir
from hiber.kernel import proc
from uprobes import PerfUprobe, TracefsUprobe, wait_for_uprobes_mapping

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
REFUSED = ("PID {pid} has a [uprobes] mapping: check which uprobes are attached to it and "
           "re-run with --allow-uprobes")


def growing(probe, how_long=0.2):
    before = probe.hits()
    time.sleep(how_long)
    return probe.hits() > before


def dump_with_probes(t, images):
    """Refused without the option, the process unharmed; done with it."""
    result = run_hiber("dump", "-t", t.pid, "-D", images / "refused")
    assert result.returncode == 1
    assert result.stderr.decode() == f"hiber: {REFUSED.format(pid=t.pid)}\n"
    assert proc.stat(t.pid).state in "SR"
    result = run_hiber("dump", "-t", t.pid, "-D", images, "--allow-uprobes")
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    d = ImageDir(images)
    assert d.inventory().allow_uprobes
    assert not any(v.start == 0x7fffffffe000 or v.status & V.VMA_AREA_UPROBES
                   for v in d.read_one("MM", t.pid).vmas)
    return d


def restore_refused_then_done(images):
    result = run_hiber("restore", "-D", images, "-d")
    assert result.returncode == 1 and b"restore with --allow-uprobes" in result.stderr
    result = run_hiber("restore", "-D", images, "-d", "--allow-uprobes")
    assert result.returncode == 0, result.stderr.decode()


def test_active_tracefs_probes_keep_being_hit(start_target, tmp_path):
    t = start_target("probed")
    binary = TARGETS_BIN / "probed"
    with TracefsUprobe(binary, "probed_function", f"a{t.pid}") as first, \
            TracefsUprobe(binary, "probed_other", f"b{t.pid}") as second, \
            TracefsUprobe(LIBC, "usleep", f"c{t.pid}") as in_libc:
        wait_for_uprobes_mapping(t.pid)
        assert all(growing(p) for p in (first, second, in_libc))
        dump_with_probes(t, tmp_path)
        restore_refused_then_done(tmp_path)
        time.sleep(0.1)
        assert t.alive(), "the restored process died"
        assert all(growing(p) for p in (first, second, in_libc))
        wait_for_uprobes_mapping(t.pid)  # the kernel made a new XOL area
        t.check()


def test_restore_without_the_probe_dies_of_sigtrap(start_target, tmp_path):
    t = start_target("probed")
    with PerfUprobe(t.pid, TARGETS_BIN / "probed", "probed_function") as probe:
        wait_for_uprobes_mapping(t.pid)
        assert growing(probe)
        dump_with_probes(t, tmp_path)
    # the probe belonged to the dumped task: the restored one has the int3
    # bytes in its code and no probe behind them
    restore_refused_then_done(tmp_path)
    assert t.wait(10) == -signal.SIGTRAP
