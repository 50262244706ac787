"""Stage 3 of a restore: each stub becomes the dumped process.

hiber seizes the stub (PTRACE_O_EXITKILL: if hiber dies, so does it) and,
by syscalls injected into it, in an order that keeps each step possible:

    drop the stub's memory but a scratch area, park the kernel's areas
    map every VMA of the image and fill its pages, or
    move its premap into place                          (resources/memory.py)
    put the kernel's vdso and vvar back, or a proxy     (kernel_areas.py)
    mm fields, sigactions, itimers, signals of the task (resources/core.py)
    the threads, with their TIDs                        (threads.py)
    POSIX timers, once the threads they signal exist    (resources/timers.py)
    memfd seals, then closing the stub's helper fds
    credentials last: after them the task may no longer be allowed the rest
"""

import os

from ..errors import RestoreError
from ..faults import fault_point
from ..inject.remote import RemoteTask
from ..kernel import proc
from ..kernel import ptrace as pt
from ..pages import lazy
from ..progress import progress_bar
from ..resources import aio, core, locks, memory, timers, vdso
from ..resources.files import memfd
from . import kernel_areas, threads
from .fork import mapping_key

SCRATCH_SIZE = 64 << 10


def rebuild_tree(plan, options):
    """Every live process, one after the other; returns the pages restored."""
    pages = 0
    total = sum(p.pagemap.present_pages for p in plan.live)
    handover = lazy.Handover(plan.images.path) if options.lazy_pages else None
    try:
        with progress_bar(total, options.show_progress, "restoring memory") as bar:
            for p in plan.live:
                take_over(p)
                pages += rebuild(plan, p, options, bar.update, handover)
    finally:
        if handover is not None:
            handover.close()
    return pages


def take_over(p):
    pt.seize(p.pid, pt.PTRACE_O_EXITKILL | pt.PTRACE_O_TRACECLONE)
    pt.interrupt(p.pid)
    kind, sig = pt.stop_kind(pt.wait(p.pid))
    if kind != "event-stop":
        raise RestoreError(f"PID {p.pid}: the stub did not stop as expected ({kind} {sig})")


def rebuild(plan, p, options, progress=None, handover=None):
    services = p.services
    with RemoteTask(p.pid, killed_with_tracer=True) as task:
        rseq = pt.get_rseq_configuration(p.pid)
        if rseq.rseq_abi_pointer:
            # the stub's rseq area is about to vanish with its memory
            task.syscall("rseq", rseq.rseq_abi_pointer, rseq.rseq_abi_size, 1, rseq.signature)

        areas = vdso.kernel_areas(p.pid)
        occupied = [(m.start, m.end) for m in proc.maps(p.pid)] + \
            [(v.start, v.end) for v in p.mm.vmas]
        scratch = task.scratch(SCRATCH_SIZE, memory.free_gap(occupied, SCRATCH_SIZE))
        occupied.append((scratch, scratch + SCRATCH_SIZE))
        drain_pending_signals(task, scratch)
        parked = kernel_areas.park(task, areas, occupied)

        premapped = {int(start): address for start, address in services["premapped"].items()}
        mem = memory.MemoryRestore(task, p.mm.vmas, p.pagemap, services["pages"],
                                   lambda v: services["map"][mapping_key(v)],
                                   scratch, SCRATCH_SIZE, premapped, lazy=handover is not None)
        premaps = [(premapped[v.start], premapped[v.start] + v.end - v.start)
                   for v in p.mm.vmas if v.start in premapped]
        mem.unmap_stub([(scratch, scratch + SCRATCH_SIZE)] + [(s, e) for _, s, e in parked]
                       + premaps)
        mem.create_vmas()
        mem.fill_pages(progress)
        fault_point(options, "rebuild")
        mem.finish()
        aio.restore_rings(task, scratch, SCRATCH_SIZE, p.mm.aios)
        if mem.lazy_runs:
            handover.hand_over(task, p.pid, mem.vmas, mem.lazy_runs)
        kernel_areas.place(task, p, parked)

        core.restore_task(task, scratch, p.pid, p.core, p.mm, _exe_fd(p, services))
        core.restore_thread(task, scratch, p.pid, p.pid, p.core, timers.posix_timer_ids(p.core))
        threads.restore_threads(task, scratch, p)
        # after the threads: a timer may signal one of them (SIGEV_THREAD_ID)
        queues = [p.core.tc.signals_s, p.core.thread_core.signals_p,
                  *(c.thread_core.signals_p for c in p.thread_cores.values())]
        timers.restore_posix_timers(task, scratch, p.core.tc.timers, queues)
        memfd.seal_objects(task, plan.memfd_inodes, services["shmem"])
        for fd in _service_fds(services):
            task.syscall("close", fd)
        # last: closing any fd of a file drops the process's POSIX locks on it
        locks.take_posix(task, scratch, plan.images, p.pid)
    return mem.pages_restored


def _exe_fd(p, services):
    """The fd to give PR_SET_MM_MAP as the new exe, or -1 to keep the stub's.

    The kernel refuses (EBUSY) to replace the exe link while the old exe file
    is still mapped; when the stub's exe (the python running hiber) is the
    very file the image wants, as for a restored Python program, keeping it
    is both allowed and right."""
    ours = os.stat(f"/proc/{p.pid}/exe")
    wanted = os.stat(f"/proc/{p.pid}/fd/{services['exe']}")
    if (ours.st_dev, ours.st_ino) == (wanted.st_dev, wanted.st_ino):
        return 0xffffffff
    return services["exe"]


def _service_fds(services):
    fds = [*services["reports"], services["pages"], services["exe"]]
    return sorted(set(fds + list(services["map"].values()) + list(services["shmem"].values())))


def drain_pending_signals(task, scratch):
    """Signals queued to the stub itself (SIGCHLD of a zombie child, ...)
    must not reach the restored process: take each with a zero timeout."""
    status = proc.status(task.pid)
    pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
    task.write(scratch + 8, bytes(16))  # struct timespec {0, 0}
    while pending:
        sig = (pending & -pending).bit_length()
        pending &= pending - 1
        task.write(scratch, (1 << (sig - 1)).to_bytes(8, "little"))
        task.syscall_raw("rt_sigtimedwait", scratch, 0, scratch + 8, 8)
