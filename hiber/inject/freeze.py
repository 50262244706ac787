"""Freeze and thaw a process tree with PTRACE_SEIZE + PTRACE_INTERRUPT.

A process may fork or start threads while we freeze it, so we seize what we
see, wait for the stops, and look again until a full pass finds nothing new.
Once every thread of a process is in a ptrace stop it can create nothing
more, so the loop ends.
"""

import errno
import logging
import os
import signal
import time
from dataclasses import dataclass, field

from ..errors import HiberError
from ..kernel import proc
from ..kernel import ptrace as pt
from . import interrupts
from .seccomp import seccomp_mode
from .stopguard import StopGuard

log = logging.getLogger(__name__)


class FreezeError(HiberError):
    pass


@dataclass
class FrozenProcess:
    pid: int
    threads: list = field(default_factory=list)  # leader first
    stopped: bool = False       # was in a job-control stop before we came
    stop_signal: int = 0
    zombie: bool = False


@dataclass
class FrozenTree:
    root: int
    processes: dict = field(default_factory=dict)  # pid -> FrozenProcess, pre-order
    parents: dict = field(default_factory=dict)    # pid -> ppid inside the tree
    guard: StopGuard = field(default_factory=StopGuard)  # re-stops woken processes

    def all_threads(self):
        for p in self.processes.values():
            yield from p.threads

    def thaw(self):
        """Let every task go: running ones run, stopped ones stay stopped."""
        failures = []
        for p in self.processes.values():
            if p.stopped:
                # queued now, taken on the way back to user mode: the process
                # stops again before it runs a single instruction
                try:
                    os.kill(p.pid, p.stop_signal or signal.SIGSTOP)
                except ProcessLookupError:
                    pass
            for tid in p.threads:
                try:
                    pt.detach(tid)
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        failures.append(f"{tid}: {e.strerror}")
        self.guard.release()
        # the stop is taken once the detached thread is scheduled: wait for
        # it (briefly), so that whoever looks after hiber returns sees the
        # process stopped, as it was
        for p in self.processes.values():
            if p.stopped:
                _wait_stopped(p.pid)
        if failures:
            log.warning("could not detach from %s", ", ".join(failures))

    def kill(self):
        """SIGKILL every process of the tree (criu dump's default ending).

        A traced thread that dies stays a zombie until its tracer waits for
        it, and its process cannot be reaped by its parent before that: so
        the tracer (we) reaps the threads, and passes each leader on to its
        parent by waiting for it too, unless we are that parent."""
        ours = os.getpid()
        # only the root has no parent inside the tree: ask /proc for its own
        our_children = {pid for pid, parent in self.parents.items() if parent == ours}
        if _real_parent(self.root) == ours:
            our_children.add(self.root)
        for pid in self.processes:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.guard.release()
        for p in self.processes.values():
            for tid in p.threads:
                try:
                    pt.detach(tid)  # fails (ESRCH) once the kill has woken it
                except OSError:
                    pass
        # threads first: a group leader is not reported before its threads
        # are gone, and a traced thread is gone only once we reaped it
        for p in self.processes.values():
            for tid in p.threads:
                if tid != p.pid:
                    _reap_traced(tid)
        for p in self.processes.values():
            if p.threads and p.pid not in our_children:  # ours: our caller's to reap
                _reap_traced(p.pid)


def _reap_traced(tid):
    try:
        os.waitpid(tid, pt.WALL)
    except ChildProcessError:
        pass  # not traced by us any more: detached before the kill woke it


def _wait_stopped(pid, seconds=1.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if proc.stat(pid).state in "TtZX":
                return
        except proc.NoSuchProcess:
            return
        time.sleep(0.001)


def _real_parent(pid):
    try:
        return proc.stat(pid).ppid
    except proc.NoSuchProcess:
        return None


def _wait_for_stop(tid):
    """Wait until a freshly interrupted thread is in a ptrace stop.

    A signal may be in the middle of delivery: let it be delivered (the
    pending interrupt stops the thread right after) so no signal is lost.
    Returns the stop signal of a group stop, or 0 for the interrupt stop.
    """
    while True:
        kind, sig = pt.stop_kind(pt.wait(tid))
        if kind in ("exited", "killed"):
            return None
        if kind == "event-stop":
            return 0 if sig == signal.SIGTRAP else sig
        pt.cont(tid, sig)


def _wake_for_injection(pid, threads):
    """Take a job-control-stopped process out of its group stop.

    A thread in a group stop cannot run injected syscalls (resuming it just
    reports the group stop again).  SIGCONT ends the group stop; its delivery
    is suppressed, the threads are interrupted again, and thaw() sends the
    original stop signal back before letting go.
    """
    os.kill(pid, signal.SIGCONT)
    for tid in threads:
        # SIGCONT ends the group stop but does not resume a thread sitting in
        # its ptrace stop: resume it, with a fresh interrupt pending
        pt.interrupt(tid)
        pt.cont(tid)
    for tid in threads:
        while True:
            kind, sig = pt.stop_kind(pt.wait(tid))
            if kind in ("exited", "killed") or kind == "event-stop":
                break
            pt.cont(tid, 0 if sig == signal.SIGCONT else sig)


def _exiting(pid, tid):
    """Whether a thread is on its way out (the kernel refuses to attach to an
    exiting task with EPERM, the same answer as for a forbidden one)."""
    try:
        return proc.stat(pid, tid).state in "ZXx"
    except proc.NoSuchProcess:
        return True


# TRACESYSGOOD: syscall stops report SIGTRAP|0x80, a number no signal has,
# so a tracee left in one by a dying tracer is sent no SIGTRAP.
# SUSPEND_SECCOMP: injected syscalls bypass the tracee's seccomp filters (a
# filter that kills on an unexpected syscall would kill it otherwise).
SEIZE_OPTIONS = pt.PTRACE_O_TRACESYSGOOD | pt.PTRACE_O_SUSPEND_SECCOMP
CAP_SYS_ADMIN = 21


def can_suspend_seccomp():
    """The kernel lets a tracer suspend seccomp only when it has
    CAP_SYS_ADMIN and runs under no seccomp filter of its own."""
    own = proc.status(os.getpid())
    return (int(own.get("CapEff", "0"), 16) >> CAP_SYS_ADMIN & 1
            and own.get("Seccomp", "0") == "0")


def _seize_thread(pid, tid, options):
    try:
        pt.seize(tid, options)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return False  # exited meanwhile
        if e.errno == errno.EPERM:
            if _exiting(pid, tid):
                return False  # began to exit after we listed it
            raise FreezeError(f"cannot ptrace TID {tid}: permission denied "
                              "(is it traced already, or another user's without privileges?)")
        raise
    pt.interrupt(tid)
    return True


def _wait_until_zombie(pid, timeout=5):
    """A process that began to exit while we froze its parent becomes a
    zombie (its parent, frozen, cannot reap it): wait for that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.stat(pid).state == "Z":  # NoSuchProcess if it is gone after all
            return
        time.sleep(0.001)
    raise FreezeError(f"PID {pid} neither runs nor became a zombie in {timeout} s")


def _check_seccomp(pid, tid, options):
    if not options & pt.PTRACE_O_SUSPEND_SECCOMP and seccomp_mode(pid, tid):
        raise FreezeError(f"TID {tid} of PID {pid} runs under seccomp, and hiber cannot "
                          "suspend it (that takes CAP_SYS_ADMIN and no seccomp filter on "
                          "hiber itself): the syscalls hiber injects would meet the filter")


def _freeze_process(tree, pid, options):
    """Seize every thread of one process; returns False if it is gone."""
    st = proc.stat(pid)
    p = FrozenProcess(pid)
    if st.state == "Z":
        p.zombie = True
        tree.processes[pid] = p
        return True
    p.stopped = st.state == "T"
    seized = []
    gone = set()  # exiting or exited: still listed in /proc for a while
    while True:
        new = [t for t in proc.thread_ids(pid) if t not in seized and t not in gone]
        if not new:
            break
        for tid in new:
            if _seize_thread(pid, tid, options):
                seized.append(tid)
            else:
                gone.add(tid)
        for tid in new:
            if tid in seized:
                sig = _wait_for_stop(tid)
                if sig is None:
                    seized.remove(tid)
                    gone.add(tid)
                else:
                    _check_seccomp(pid, tid, options)
                    if sig:
                        p.stop_signal = sig
    if not seized and _exiting(pid, pid):
        _wait_until_zombie(pid)
        p.zombie = True
        tree.processes[pid] = p
        return True
    if p.stopped:
        tree.guard.watch(pid, p.stop_signal or signal.SIGSTOP)
        _wake_for_injection(pid, seized)
    # the leader first, as images list threads (spec §2.2)
    p.threads = sorted(seized, key=lambda t: (t != pid, t))
    if pid not in p.threads:
        # a leader that exited while other threads run: its tid is gone
        raise FreezeError(f"PID {pid}: the thread group leader has exited; "
                          "hiber cannot dump such a process")
    tree.processes[pid] = p
    return True


def freeze_tree(root):
    """Freeze root and all its descendants. On failure, thaws what it froze."""
    if not proc.exists(root):
        raise proc.NoSuchProcess(root)
    if root == os.getpid():
        raise FreezeError("hiber cannot dump itself")
    tree = FrozenTree(root)
    options = SEIZE_OPTIONS if can_suspend_seccomp() else pt.PTRACE_O_TRACESYSGOOD
    try:
        queue = [root]
        while queue:
            interrupts.check()
            pid = queue.pop(0)
            if pid in tree.processes:
                continue
            try:
                _freeze_process(tree, pid, options)
            except proc.NoSuchProcess:
                if pid == root:
                    raise
                continue
            kids = []
            for tid in tree.processes[pid].threads or [pid]:
                kids += proc.children(pid, tid)
            for kid in sorted(set(kids)):
                tree.parents[kid] = pid
                queue.append(kid)
        # pre-order: parents before children, as pstree.img wants them
        tree.processes = _pre_order(tree)
        return tree
    except BaseException:
        tree.thaw()
        raise


def _pre_order(tree):
    ordered = {}
    children = {}
    for kid, parent in tree.parents.items():
        children.setdefault(parent, []).append(kid)

    def visit(pid):
        if pid in tree.processes:
            ordered[pid] = tree.processes[pid]
            for kid in sorted(children.get(pid, [])):
                visit(kid)

    visit(tree.root)
    return ordered
