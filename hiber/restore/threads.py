"""The threads of a restored process, with their TIDs (part of the rebuild:
they are made once the leader's memory and state are back, and share them)."""

from ..errors import RestoreError
from ..inject.remote import RemoteTask
from ..kernel import ptrace as pt
from ..resources import core, timers

CLONE_THREAD_FLAGS = (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000)
# CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM


def restore_threads(task, scratch, p):
    """Every thread but the leader (``task``), each with its own state."""
    for tid, thread_core in p.thread_cores.items():
        create_thread(task, scratch, p.pid, tid)
        with RemoteTask(p.pid, tid, task.gadget, killed_with_tracer=True) as thread:
            core.restore_thread(thread, scratch, p.pid, tid, thread_core,
                                timers.posix_timer_ids(p.core))


def create_thread(task, scratch, pid, tid):
    """A thread with its dumped TID, by clone3 injected into the leader.
    Traced clones start stopped (PTRACE_O_TRACECLONE), so the new thread
    never runs a single instruction of its own before release()."""
    tids = scratch + 256
    task.write(tids, tid.to_bytes(4, "little"))
    args = b"".join(v.to_bytes(8, "little") for v in (
        CLONE_THREAD_FLAGS, 0, 0, 0, 0, 0, 0, 0, tids, 1, 0))
    task.write(scratch, args)
    got = task.syscall("clone3", scratch, len(args))
    if got != tid:
        raise RestoreError(f"PID {pid}: thread {tid} came back as {got}")
    kind, sig = pt.stop_kind(pt.wait(tid))
    if kind != "event-stop":
        raise RestoreError(f"PID {pid}: new thread {tid} did not stop ({kind} {sig})")
