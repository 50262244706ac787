"""Stage 4 of a restore: let the tree run, then tell the world.

Only when every process is rebuilt does any of them run: each thread gets
its registers and signal mask, a stopped process its stop signal, and hiber
detaches. Then the stats, the pidfile, and (not detached) the wait for the
root's exit status.
"""

import os
import signal

from ..errors import UsageError
from ..images.messages import classes
from ..kernel import ptrace as pt
from ..resources import core


def release_tree(plan):
    for p in plan.live:
        release(p)


def release(p):
    core.set_registers(p.pid, p.core, p.core.tc.blk_sigset)
    for tid, thread_core in p.thread_cores.items():
        core.set_registers(tid, thread_core, thread_core.thread_core.blk_sigset, p.pid)
    if p.core.tc.task_state == core.TASK_STOPPED:
        os.kill(p.pid, p.core.tc.stop_signo or signal.SIGSTOP)
    for tid in [p.pid, *p.thread_cores]:
        pt.detach(tid)


def refuse_existing_pidfile(pidfile):
    """Before anything: criu will not overwrite a pidfile, nor will hiber."""
    if pidfile and os.path.exists(pidfile):
        raise UsageError(f"--pidfile {pidfile} exists already; hiber will not overwrite it")


def write_pidfile(pidfile, pid):
    """The root's PID, without a newline, as criu writes it."""
    if pidfile:
        fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, str(pid).encode())
        os.close(fd)


def write_stats(images, forking, elapsed, pages):
    stats = classes["stats_entry"]()
    r = stats.restore
    r.pages_compared = 0
    r.pages_skipped_cow = 0
    r.forking_time = int(forking * 1e6)
    r.restore_time = int(elapsed * 1e6)
    r.pages_restored = pages
    images.write_stats("stats-restore", stats)


def wait_for_root(pid):
    """The restored root's exit status (-N: killed by signal N)."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
