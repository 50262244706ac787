"""Stage 2 of a restore: the stubs, one per process, with its PID.

hiber forks the root stub with clone3 and the dumped PID. The root stub,
still a copy of hiber, opens every file and shared-memory object of the
tree once, then forks the children (each with its PID, session and group,
in pre-order), so that what processes share they inherit, shared again.
Before forking its children a stub premaps the private memory it shares
copy-on-write with its family (resources/cow.py), and makes a helper for
each process group whose leader is gone. Each stub then sets up its own
fds, cwd, umask and rlimits, reports its helper fds and premaps
("services") to hiber on its report pipe, and sleeps until hiber takes it
over. A zombie's stub exits at once with the dumped status.

A stub that fails reports the reason in one line and exits; hiber then
kills every stub (StubTree.kill): nothing half-made is left.
"""

import ctypes
import json
import os
import select
import signal
import time

from ..errors import RestoreError
from ..images import vma as V
from ..kernel.clone import fork_with_pid
from ..kernel.sys import syscall
from ..resources import core, cow, ctty, files, fs, locks
from ..resources.files import memfd, pidfd, regular, terminal

STUB_TIMEOUT = 30
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
PR_SET_PDEATHSIG = 1


class Subreaper:
    """hiber is the child subreaper of the stubs while it restores: a stub
    orphaned by a failure comes back to hiber to be reaped."""

    def __enter__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int()
        libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0)
        self.before = value.value
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.libc = libc
        return self

    def __exit__(self, *exc):
        self.libc.prctl(PR_SET_CHILD_SUBREAPER, self.before, 0, 0, 0)


class StubTree:
    """The stubs of one restore: created, reported, and on failure removed."""

    def __init__(self, plan):
        self.plan = plan
        self.reports = {}  # pid -> read end of that stub's report pipe

    def kill(self):
        """SIGKILL every stub and reap them all (hiber is their subreaper)."""
        for p in self.plan.processes:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # a stub's children come to hiber (their subreaper) only once their
        # parent is dead: wait for each until it is reaped or gone
        pending = {p.pid for p in self.plan.processes}
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        pending.discard(pid)
                except ChildProcessError:
                    if not os.path.exists(f"/proc/{pid}"):
                        pending.discard(pid)
            if pending:
                time.sleep(0.002)
        self.close()

    def close(self):
        for fd in self.reports.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.reports.clear()


def fork_tree(plan):
    """Fork the root stub; it forks the rest. Returns a StubTree whose
    processes have all reported their helper fds."""
    stubs = StubTree(plan)
    writers = {}
    for p in plan.live:
        stubs.reports[p.pid], writers[p.pid] = os.pipe()
    hiber = os.getpid()
    try:
        pid = fork_with_pid(plan.root.pid)
    except OSError as e:
        for fd in writers.values():
            os.close(fd)
        stubs.close()
        raise RestoreError(f"cannot create PID {plan.root.pid}: {e.strerror}") from None
    if pid == 0:
        _die_with_parent(hiber)
        _stub_entry(plan, writers, stubs.reports)  # never returns
    for fd in writers.values():
        os.close(fd)
    try:
        _collect_reports(plan, stubs)
    except BaseException:
        stubs.kill()
        raise
    return stubs


def _die_with_parent(parent):
    """A stub dies with the process that forked it, so a hiber killed at any
    instant leaves no half-made process: the stubs it has seized die with it
    through PTRACE_O_EXITKILL, the others through this chain of parent-death
    signals. restore_thread puts the image's own parent-death signal back."""
    syscall("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the prctl took effect


def _stub_entry(plan, writers, readers):
    """The root stub's start: report anything that goes wrong, then vanish."""
    try:
        for fd in readers.values():
            os.close(fd)
        stub_root(plan, writers)
    except BaseException as e:  # noqa: B036 - reported to hiber, then _exit
        _report_error(writers[plan.root.pid], e)  # wherever stub_root moved it
    os._exit(1)


def _report_error(fd, e):
    try:
        os.write(fd, ("E " + f"{type(e).__name__}: {e}".replace("\n", " ") + "\n").encode())
    except OSError:
        pass


def _collect_reports(plan, stubs):
    pending = {fd: pid for pid, fd in stubs.reports.items()}
    deadline = time.monotonic() + STUB_TIMEOUT
    while pending:
        ready, _, _ = select.select(list(pending), [], [], max(0, deadline - time.monotonic()))
        if not ready:
            raise RestoreError(f"setting up PID(s) {sorted(pending.values())} timed out")
        for fd in ready:
            pid = pending.pop(fd)
            line = os.read(fd, 1 << 20).decode()
            if not line.startswith("{"):
                reason = line[2:].strip() if line.startswith("E ") else "it died"
                raise RestoreError(f"setting up PID {pid} failed: {reason}")
            plan.by_pid[pid].services = json.loads(line)


def stub_root(plan, writers):
    """In the root stub: everything shared is opened here, once, and every
    child inherits it (so shared files keep one position, a pipe stays one
    pipe, shared memory one object)."""
    floor = plan.fd_floor
    keep = set(writers.values())
    for fd in range(0, max(keep) + 1):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.closerange(max(keep) + 1, 1 << 20)
    for pid, fd in writers.items():  # in place: _stub_entry reports through it
        writers[pid] = files.high_dup(fd, floor)
    shared = memfd.StubObjects(plan.images, plan.memfd_inodes, floor)
    shared.create_all()
    stub_files = files.StubFiles(plan.files, shared, floor, plan.shell_tty)
    for p in plan.live:
        for e in p.fdinfo:
            entry = plan.files.entry(e.id)
            if not (regular.opens_late(plan.files, entry)
                    or terminal.opens_late(plan.files, entry)  # /dev/tty: its holder
                    or pidfd.opens_late(plan.files, entry)):
                stub_files.open_object(e.id)
    stub_process(plan, plan.root, stub_files, shared, writers, done=None)


def stub_process(plan, p, stub_files, shared, writers, done):
    """One process's stub: session and group, children, then its own setup."""
    e = p.pstree
    pgid = plan.group_of(e.pgid)
    session_tty = None
    if e.sid == e.pid:
        os.setsid()
        session_tty = ctty.take(plan.files, stub_files, e.pid)  # ctty: before the children fork
    elif pgid == e.pid:
        os.setpgid(0, 0)
    elif pgid != os.getpgrp():
        os.setpgid(0, pgid)
    if p.zombie:
        _die_as(p.core.tc.exit_code)
    # before the children fork: they inherit it, shared
    cow.premap(plan, p, lambda v: stub_files.map_fd(v.shmid, open_mode(v)))
    helpers = [_group_helper(pgid) for pgid in plan.group_helpers.get(e.pid, ())]
    for child in p.children:
        _fork_child(plan, child, stub_files, shared, writers)
    ctty.give_foreground(session_tty)  # ctty: the session's groups exist now
    for helper in helpers:
        os.kill(helper, signal.SIGKILL)
        os.waitpid(helper, 0)
    if done is not None:
        os.write(done, b"x")  # this subtree stands: the parent may go on
        os.close(done)
    _own_setup(plan, p, stub_files, shared, writers)


def _group_helper(pgid):
    """A process with the PID of a group leader that is gone, leading its
    group until the members have joined it (a group lives on without its
    leader, setpgid() needs one member to join). The caller kills and reaps
    it before the tree runs: the restored processes never see it."""
    parent = os.getpid()
    pid = fork_with_pid(pgid)
    if pid == 0:
        _die_with_parent(parent)
        while True:
            time.sleep(3600)
    os.setpgid(pid, pid)  # from here: no race with the members that join it
    return pid


def _fork_child(plan, child, stub_files, shared, writers):
    """Fork one child stub and wait until its whole subtree exists, so the
    groups it leads exist before later processes join them."""
    done_r, done_w = os.pipe()
    parent = os.getpid()
    pid = fork_with_pid(child.pid)
    if pid == 0:
        _die_with_parent(parent)
        os.close(done_r)
        report = writers.get(child.pid, done_w)
        try:
            stub_process(plan, child, stub_files, shared, writers, done_w)
        except BaseException as e:  # noqa: B036
            _report_error(report, e)
        os._exit(1)
    os.close(done_w)
    got = os.read(done_r, 1)
    os.close(done_r)
    if not got and not child.zombie:
        raise RestoreError(f"the stub of PID {child.pid} died while being set up")


def _die_as(status):
    """End as the dumped zombie ended: status is in wait() form. A zombie
    killed by a signal dies of it again; not dumpable first, so that a
    signal whose default is to dump core (SIGSEGV, SIGABRT ...) writes no
    core of the stub anywhere (fs/coredump.c skips tasks not dumpable). The
    "core dumped" bit of the status is therefore not given back."""
    sig = status & 0x7f
    if sig:
        syscall("prctl", core.PR_SET_DUMPABLE, 0, 0, 0, 0)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # these have no handler to reset
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit((status >> 8) & 0xff)


def _own_setup(plan, p, stub_files, shared, writers):
    stub_files.install(p.fdinfo)
    locks.take(plan.images, p.pid)  # on its fds, by this process: the owner locks need
    floor = plan.fd_floor
    services = {"reports": sorted(writers.values()), "map": {}, "shmem": {}}
    services["pages"] = files.high_dup(os.open(p.pages_path, os.O_RDONLY), floor)
    services["exe"] = stub_files.map_fd(p.mm.exe_file_id, os.O_RDONLY)
    for v in p.mm.vmas:
        if not v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED):
            continue
        key = mapping_key(v)
        if key not in services["map"]:
            services["map"][key] = stub_files.map_fd(v.shmid, open_mode(v))
    for inode_id, fd in shared.fds.items():
        services["shmem"][str(inode_id)] = fd
    services["premapped"] = {str(start): address for start, address in p.premapped.items()}

    core.set_own_rlimits(p.core.tc.rlimits.rlimits)
    report = (json.dumps(services) + "\n").encode()
    # last: after a chroot, no module this Python has yet to import is there
    fs.enter_fs(plan.files, p.fs)

    os.write(writers[p.pid], report)
    while True:
        time.sleep(3600)  # hiber takes over while we sleep here


def open_mode(v):
    """How the stub opens a mapped file: as the dumped mapping had it open."""
    return v.fdflags if v.HasField("fdflags") else os.O_RDONLY


def mapping_key(v):
    """Names, in a stub's report, the fd a file-backed VMA is mapped from:
    one fd per file and open mode."""
    return f"{v.shmid}:{open_mode(v)}"
