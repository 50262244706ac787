"""The restore sequence, as named stages:

1. Plan          read and check every image; refuse before creating anything
2. fork_tree     clone3 with the dumped PID; the root stub, still a copy of
                 hiber, opens every file and shared-memory object of the tree
                 once, then forks the children (each with its PID, session
                 and group, in pre-order), and each stub sets up its own fds,
                 cwd, umask, rlimits, then waits. A zombie's stub exits at
                 once with the dumped status.
3. take_over     PTRACE_SEIZE every stub (EXITKILL: if hiber dies, so do they)
4. rebuild       by injected syscalls: drop the stub's memory, map every VMA
                 of the image, fill its pages, move the vdso in place, put
                 back mm fields, signals, timers, threads, credentials
5. release       registers and signal masks, then let them all run

A failure at any stage kills and reaps every stub: nothing half-made is left.
"""

import ctypes
import json
import logging
import os
import select
import signal
import time
from dataclasses import dataclass, field

from .errors import HiberError, UsageError
from .images import vma as V
from .images.imagedir import ImageDir
from .inject.remote import RemoteTask
from .kernel import proc
from .kernel import ptrace as pt
from .kernel.clone import fork_with_pid
from .progress import progress_bar
from .resources import core, files, memory, shmem, taskstate, vdso

log = logging.getLogger(__name__)

SCRATCH_SIZE = 64 << 10
STUB_TIMEOUT = 30
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
UPROBES_MESSAGE = ("Images were dumped with --allow-uprobes: make sure the same uprobes are "
                   "active, then restore with --allow-uprobes")


class RestoreError(HiberError):
    pass


@dataclass
class ProcessPlan:
    """What one process needs, read and checked before anything is created."""
    pid: int
    pstree: object
    core: object
    zombie: bool = False
    mm: object = None
    fs: object = None
    fdinfo: list = field(default_factory=list)
    pagemap: object = None
    pages: object = None                              # its PagesReader
    vdso_image: object = None
    vdso_plan: object = None                          # vdso.VdsoPlan: in place or proxy
    thread_cores: dict = field(default_factory=dict)  # tid -> core_entry, leader excluded
    children: list = field(default_factory=list)      # ProcessPlans, pre-order
    services: dict = field(default_factory=dict)      # its stub's helper fds


@dataclass
class RestoreResult:
    pids: list
    pages_restored: int
    images_dir: str
    times: dict = field(default_factory=dict)
    exit_status: int | None = None


# ---- 1. read and check ------------------------------------------------------

class Plan:
    def __init__(self, images, allow_uprobes, shell_job, check_pids=True, check_files=True):
        self.images = images
        self.shell_job = shell_job
        self.check_pids = check_pids
        self.hiber_pgid = os.getpgrp()
        self.shell_tty = _own_terminal() if shell_job else None
        inventory = images.inventory()
        if inventory.img_version != 2 or not inventory.fdinfo_per_id:
            raise RestoreError(f"{images.path}: image version {inventory.img_version} is not "
                               "supported (hiber reads CRIU's version 2 images)")
        if inventory.allow_uprobes and not allow_uprobes:
            raise RestoreError(UPROBES_MESSAGE)
        self.files = {f.id: f for f in images.read_optional("FILES")}
        self.pipe_data = _queued_data(images, "PIPES_DATA")
        self.fifo_data = _queued_data(images, "FIFO_DATA")
        self.memfd_inodes = images.read_optional("MEMFD_INODE")
        tree = images.read("PSTREE")
        if not tree or tree[0].ppid != 0:
            raise RestoreError("pstree.img: the first process must be the root (ppid 0)")
        self.processes = [self._process(p) for p in tree]
        self.by_pid = {p.pid: p for p in self.processes}
        self.root = self.processes[0]
        for p in self.processes[1:]:
            parent = self.by_pid.get(p.pstree.ppid)
            if parent is None:
                raise RestoreError(f"pstree.img: the parent {p.pstree.ppid} of {p.pid} is not "
                                   "listed before it")
            parent.children.append(p)
        self._check_sessions()
        if check_files:
            self._check_files()

    @property
    def live(self):
        return [p for p in self.processes if not p.zombie]

    def _process(self, entry):
        pid = entry.pid
        for tid in (entry.threads or [pid]) if self.check_pids else ():
            if proc.exists(tid):
                raise RestoreError(f"PID {tid} is already in use: stop that process (or "
                                   "restore in a fresh PID namespace) and try again")
        c = self.images.read_one("CORE", pid)
        if c.mtype != 1 or not c.HasField("tc"):
            raise RestoreError(f"core-{pid}.img: not an x86-64 task")
        if c.tc.task_state == core.TASK_DEAD:
            return ProcessPlan(pid, entry, c, zombie=True)
        if c.tc.task_state not in (core.TASK_ALIVE, core.TASK_STOPPED) or \
                not c.HasField("thread_info"):
            raise RestoreError(f"core-{pid}.img: task state {c.tc.task_state} cannot be "
                               "restored")
        ids = self.images.read_one("IDS", pid)
        plan = ProcessPlan(pid, entry, c, mm=self.images.read_one("MM", pid),
                           fs=self.images.read_one("FS", pid),
                           fdinfo=self.images.read_optional("FDINFO", ids.files_id),
                           pagemap=self.images.pagemap(pid))
        for tid in entry.threads[1:]:
            plan.thread_cores[tid] = self.images.read_one("CORE", tid)
        plan.pages = self.images.pages_reader(plan.pagemap)  # checks the pages file size
        plan.vdso_image = vdso.image_layout(plan.mm.vmas, plan.pages.read_range)
        return plan

    def _check_sessions(self):
        """Sessions and groups restore can rebuild by forking in pre-order."""
        root = self.root.pstree
        if root.sid != root.pid and not self.shell_job:
            raise RestoreError(f"PID {root.pid} was not a session leader (its session is "
                               f"{root.sid}): restore it with --shell-job (-j) to put it in "
                               "hiber's session")
        made = {}  # pid -> (sid, pgid) of processes created so far
        for p in self.processes:
            e = p.pstree
            parent = made.get(e.ppid)
            if parent is not None:
                if e.sid not in (e.pid, parent[0]):
                    raise RestoreError(f"PID {e.pid} is in session {e.sid}, neither its own "
                                       f"nor its parent's: restore cannot rebuild that")
                leader = made.get(e.pgid)
                if e.pgid not in (e.pid, parent[1], root.pgid) and \
                        (leader is None or leader[0] != e.sid):
                    raise RestoreError(f"PID {e.pid} is in process group {e.pgid}, whose "
                                       "leader is not restored before it in its session")
            made[e.pid] = (e.sid, e.pgid)

    def _check_files(self):
        used = set()
        for p in self.live:
            used.update(e.id for e in p.fdinfo)
            used.update(v.shmid for v in p.mm.vmas
                        if v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED))
            used.update((p.mm.exe_file_id, p.fs.cwd_id, p.fs.root_id))
        for file_id in sorted(used):
            f = self.files.get(file_id)
            if f is None:
                raise RestoreError(f"files.img has no file #{file_id}, which the images use")
            if f.HasField("reg"):
                _check_reg_file(f.reg)
            elif f.HasField("fifo"):
                _check_reg_file(self.files[f.fifo.regf_id].reg)
            elif not (f.HasField("pipe") or f.HasField("memfd")):
                raise RestoreError(f"file #{file_id} is of type {f.type}, which hiber cannot "
                                   "restore yet")

    def group_of(self, pgid):
        """The process group to join: a shell job's root stays in hiber's
        group (in the terminal's foreground when hiber is), and so does every
        process that shared the root's group."""
        root = self.root.pstree
        if self.shell_job and root.sid != root.pid and pgid == root.pgid:
            return self.hiber_pgid
        return pgid

    @property
    def fd_floor(self):
        """Temporary and helper fds live above every fd of every process."""
        return max([e.fd for p in self.live for e in p.fdinfo] + [2]) + 1


def _own_terminal():
    """The terminal hiber runs on, if any (stdin, stdout or stderr)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.ttyname(fd)
        except OSError:
            continue
    return None


def _queued_data(images, type_name):
    if not images.exists(type_name):
        return {}
    return {e.message.pipe_id: (e.extra or b"", e.message.size)
            for e in images.read_entries(type_name)}


def _check_reg_file(reg):
    try:
        info = os.stat(reg.name)
    except OSError as e:
        raise RestoreError(f"{reg.name}: {e.strerror}; the process had it open or mapped "
                           "and needs it back") from None
    if reg.HasField("size") and info.st_size != reg.size:
        raise RestoreError(f"{reg.name} changed size since the dump ({reg.size} bytes then, "
                           f"{info.st_size} now): restoring would corrupt the process")


def check_vdso(p, runtime, force_proxy):
    """Whether this process's vdso can come back, in place or by proxy."""
    try:
        return vdso.plan(p.pid, p.vdso_image, runtime, force_proxy)
    except ValueError as e:
        raise RestoreError(f"PID {p.pid}: {e}") from None


def plan_vdso(images_dir, force_proxy=False):
    """What restore would do with each process's vdso, creating nothing."""
    plan = Plan(ImageDir(images_dir), allow_uprobes=True, shell_job=True, check_pids=False,
                check_files=False)
    runtime = vdso.runtime_layout()
    return [check_vdso(p, runtime, force_proxy) for p in plan.live]


# ---- 2. the stubs --------------------------------------------------------------

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
        for p in reversed(self.plan.processes):
            try:
                os.waitpid(p.pid, 0)
            except ChildProcessError:
                pass
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
    try:
        pid = fork_with_pid(plan.root.pid)
    except OSError as e:
        for fd in writers.values():
            os.close(fd)
        stubs.close()
        raise RestoreError(f"cannot create PID {plan.root.pid}: {e.strerror}") from None
    if pid == 0:
        _stub_entry(plan, writers, stubs.reports)  # never returns
    for fd in writers.values():
        os.close(fd)
    try:
        _collect_reports(plan, stubs)
    except BaseException:
        stubs.kill()
        raise
    return stubs


def _stub_entry(plan, writers, readers):
    """The root stub's start: report anything that goes wrong, then vanish."""
    report = writers[plan.root.pid]
    try:
        for fd in readers.values():
            os.close(fd)
        stub_root(plan, writers)
    except BaseException as e:  # noqa: B036 - reported to hiber, then _exit
        _report_error(report, e)
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
    writers = {pid: files.high_dup(fd, floor) for pid, fd in writers.items()}
    shared = shmem.StubObjects(plan.images, plan.memfd_inodes, floor)
    for inode in plan.memfd_inodes:
        shared.service_fd(inode.inode_id)
    stub_files = files.StubFiles(plan.files, plan.pipe_data, plan.fifo_data, shared, floor,
                                 plan.shell_tty)
    for p in plan.live:
        for e in p.fdinfo:
            stub_files.open_object(e.id)
    stub_process(plan, plan.root, stub_files, shared, writers, done=None)


def stub_process(plan, p, stub_files, shared, writers, done):
    """One process's stub: session and group, children, then its own setup."""
    e = p.pstree
    pgid = plan.group_of(e.pgid)
    if e.sid == e.pid:
        os.setsid()
    elif pgid == e.pid:
        os.setpgid(0, 0)
    elif pgid != os.getpgrp():
        os.setpgid(0, pgid)
    if p.zombie:
        _die_as(p.core.tc.exit_code)
    for child in p.children:
        _fork_child(plan, child, stub_files, shared, writers)
    if done is not None:
        os.write(done, b"x")  # this subtree stands: the parent may go on
        os.close(done)
    _own_setup(plan, p, stub_files, shared, writers)


def _fork_child(plan, child, stub_files, shared, writers):
    """Fork one child stub and wait until its whole subtree exists, so the
    groups it leads exist before later processes join them."""
    done_r, done_w = os.pipe()
    pid = fork_with_pid(child.pid)
    if pid == 0:
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
    """End as the dumped zombie ended: status is in wait() form."""
    sig = status & 0x7f
    if sig:
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit((status >> 8) & 0xff)


def _own_setup(plan, p, stub_files, shared, writers):
    stub_files.install(p.fdinfo)
    floor = plan.fd_floor
    services = {"reports": sorted(writers.values()), "map": {}, "shmem": {}}
    pages = plan.images.file_path("PAGES", p.pagemap.pages_id)
    services["pages"] = files.high_dup(os.open(pages, os.O_RDONLY), floor)
    services["exe"] = files.high_dup(
        os.open(plan.files[p.mm.exe_file_id].reg.name, os.O_RDONLY), floor)
    for v in p.mm.vmas:
        if not v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED):
            continue
        f = plan.files[v.shmid]
        if f.HasField("memfd"):
            continue
        key = _mapping_key(v)
        if key not in services["map"]:
            services["map"][key] = files.high_dup(os.open(f.reg.name, _open_mode(v)), floor)
    for inode_id, fd in shared.fds.items():
        services["shmem"][str(inode_id)] = fd

    cwd = plan.files[p.fs.cwd_id].reg.name
    root = plan.files[p.fs.root_id].reg.name
    if root != "/":
        os.chroot(root)
    os.chdir(cwd)
    os.umask(p.fs.umask)
    _set_rlimits(p.core.tc.rlimits.rlimits)

    os.write(writers[p.pid], (json.dumps(services) + "\n").encode())
    while True:
        time.sleep(3600)  # hiber takes over while we sleep here


def _open_mode(v):
    """How the stub opens a mapped file: as the dumped mapping had it open."""
    return v.fdflags if v.HasField("fdflags") else os.O_RDONLY


def _mapping_key(v):
    """Names, in a stub's report, the fd a file-backed VMA is mapped from:
    one fd per file and open mode."""
    return f"{v.shmid}:{_open_mode(v)}"


def _set_rlimits(limits):
    import resource
    for number, limit in enumerate(limits):
        values = tuple(resource.RLIM_INFINITY if v == (1 << 64) - 1 else v
                       for v in (limit.cur, limit.max))
        try:
            resource.setrlimit(number, values)
        except (OSError, ValueError) as e:
            raise RestoreError(f"cannot set rlimit {number} to {values}: {e} "
                               "(raising a hard limit needs CAP_SYS_RESOURCE)") from None


# ---- 3-5. take over, rebuild, release ----------------------------------------

def take_over(p):
    pt.seize(p.pid, pt.PTRACE_O_EXITKILL | pt.PTRACE_O_TRACECLONE)
    pt.interrupt(p.pid)
    kind, sig = pt.stop_kind(pt.wait(p.pid))
    if kind != "event-stop":
        raise RestoreError(f"PID {p.pid}: the stub did not stop as expected ({kind} {sig})")


def rebuild(plan, p, progress=None, fault=None):
    services = p.services
    with RemoteTask(p.pid) as task:
        rseq = pt.get_rseq_configuration(p.pid)
        if rseq.rseq_abi_pointer:
            # the stub's rseq area is about to vanish with its memory
            task.syscall("rseq", rseq.rseq_abi_pointer, rseq.rseq_abi_size, 1, rseq.signature)

        kernel_areas = vdso.kernel_areas(p.pid)
        occupied = [(m.start, m.end) for m in proc.maps(p.pid)] + \
            [(v.start, v.end) for v in p.mm.vmas]
        scratch = task.scratch(SCRATCH_SIZE, memory.free_gap(occupied, SCRATCH_SIZE))
        occupied.append((scratch, scratch + SCRATCH_SIZE))
        drain_pending_signals(task, scratch)
        parked = park_kernel_areas(task, kernel_areas, occupied)

        def mapping_fd(v):
            f = plan.files[v.shmid]
            if f.HasField("memfd"):
                return services["shmem"][str(f.memfd.inode_id)]
            return services["map"][_mapping_key(v)]

        mem = memory.MemoryRestore(task, p.mm.vmas, p.pagemap, services["pages"], mapping_fd,
                                   scratch, SCRATCH_SIZE)
        mem.unmap_stub([(scratch, scratch + SCRATCH_SIZE)] + [(s, e) for _, s, e in parked])
        mem.create_vmas()
        mem.fill_pages(progress)
        if fault == "rebuild":
            raise RestoreError("failure injected while rebuilding (test)")
        mem.finish()
        place_vdso(task, p, parked)

        core.restore_task(task, scratch, p.pid, p.core, p.mm, _exe_fd(p, services))
        core.restore_thread(task, scratch, p.pid, p.pid, p.core)
        for tid, thread_core in p.thread_cores.items():
            create_thread(task, scratch, p.pid, tid)
            with RemoteTask(p.pid, tid, task.gadget) as thread:
                core.restore_thread(thread, scratch, p.pid, tid, thread_core)
        _seal_memfds(task, plan, services)
        for fd in _service_fds(services):
            task.syscall("close", fd)
    return mem.pages_restored


CLONE_THREAD_FLAGS = (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000)
# CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM


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


def _seal_memfds(task, plan, services):
    for inode in plan.memfd_inodes:
        fd = services["shmem"].get(str(inode.inode_id))
        if fd is not None and inode.name.startswith("memfd:") and inode.seals:
            task.syscall_raw("fcntl", fd, 1033, inode.seals)  # F_ADD_SEALS


def park_kernel_areas(task, areas, occupied):
    """Move the kernel's vvar/vvar_vclock/vdso, together (kernel-facts: the
    vdso reaches vvar RIP-relatively), to a place free in both layouts."""
    if not areas:
        return []
    base, end = areas[0][1], areas[-1][2]
    target = memory.free_gap(occupied, end - base)
    occupied.append((target, target + end - base))
    return move_kernel_areas(task, areas, target)


def move_kernel_areas(task, areas, new_base):
    base = areas[0][1]
    moved = []
    vdso_old = next((s for name, s, _ in areas if name == "[vdso]"), None)
    for name, start, end in areas:
        new = new_base + (start - base)
        if new != start:
            task.syscall("mremap", start, end - start, end - start, 3, new)  # MAYMOVE|FIXED
        moved.append((name, new, new + end - start))
    vdso_new = next((s for name, s, _ in moved if name == "[vdso]"), None)
    if vdso_old is not None and task.gadget and vdso_old <= task.gadget < vdso_old + 0x100000:
        # the injection gadget is a syscall instruction inside the vdso
        task.gadget += vdso_new - vdso_old
    return moved


def place_vdso(task, p, parked):
    """In-place remap when the dumped vdso matches this kernel's: the
    kernel's vdso+vvar go, together, where the image had them. Otherwise the
    dumped vdso becomes a proxy (spec §4.2)."""
    decision = p.vdso_plan
    if decision is None:
        return  # a process without vdso: nothing to put back
    if decision.proxy:
        build_proxy(task, p, parked, decision)
        return
    vdso_offset = next(s for name, s, _ in parked if name == "[vdso]") - parked[0][1]
    moved = move_kernel_areas(task, parked, decision.vdso[0] - vdso_offset)
    vvar_now = next((s for name, s, _ in moved if name == "[vvar]"), None)
    if decision.vvar and vvar_now != decision.vvar[0]:
        raise RestoreError(f"PID {p.pid}: the vvar landed at 0x{vvar_now:x}, not at "
                           f"0x{decision.vvar[0]:x}")


def build_proxy(task, p, parked, decision):
    """The dumped vdso stays where the process knows it, with a jump to this
    kernel's vdso at each entry point; the kernel's vdso and vvar stay
    parked where the image has nothing; the mark at the start of the kernel's
    vdso tells the next dump what is what (spec §4.3-§4.4)."""
    start, end = decision.vdso
    task.syscall("mmap", start, end - start, 3, 0x32, -1, 0)  # RW, PRIVATE|ANON|FIXED
    task.write(start, p.pages.read_range(start, end - start))
    rt_vdso = next(s for name, s, _ in parked if name == "[vdso]")
    for offset, target in decision.jumps:
        task.write(start + offset, vdso.trampoline(rt_vdso + target))
    task.syscall("mprotect", start, end - start, 5)  # r-x
    if decision.vvar:
        # the process's own vvar becomes a stale read-only area, as in CRIU
        vstart, vend = decision.vvar
        task.syscall("mmap", vstart, vend - vstart, 1, 0x32, -1, 0)
    rt_vvar = next((s for name, s, _ in parked if name == "[vvar]"), vdso.ALL_ONES)
    mark = vdso.VdsoMark(start, decision.vvar[0] if decision.vvar else vdso.ALL_ONES, rt_vvar)
    # the kernel's vdso is not writable: /proc/PID/mem writes through (FOLL_FORCE)
    with open(f"/proc/{p.pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(rt_vdso)
        mem.write(mark.pack())
    log.info("PID %d: vdso proxy at 0x%x -> runtime vdso at 0x%x (%d entry points)",
             p.pid, start, rt_vdso, len(decision.jumps))


def release(p):
    core.set_registers(p.pid, p.core, p.core.tc.blk_sigset)
    for tid, thread_core in p.thread_cores.items():
        core.set_registers(tid, thread_core, thread_core.thread_core.blk_sigset, p.pid)
    if p.core.tc.task_state == core.TASK_STOPPED:
        os.kill(p.pid, p.core.tc.stop_signo or signal.SIGSTOP)
    for tid in [p.pid, *p.thread_cores]:
        pt.detach(tid)


# ---- the whole sequence ------------------------------------------------------

class _Subreaper:
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


def restore(images_dir, detach=True, pidfile=None, shell_job=False, allow_uprobes=False,
            show_progress=False, fault=None, force_proxy=False):
    """Restore the tree in images_dir. Returns a RestoreResult; without
    ``detach`` it waits for the root to exit and reports its status."""
    started = time.perf_counter()
    images = ImageDir(images_dir)
    if pidfile and os.path.exists(pidfile):
        raise UsageError(f"--pidfile {pidfile} exists already; hiber will not overwrite it")
    plan = Plan(images, allow_uprobes, shell_job)
    # creds, seccomp, scheduling, CPUs, registers: refused here if not restorable
    task_state = taskstate.TaskStatePlan(images, images.inventory(), plan.live)
    runtime = vdso.runtime_layout()
    # CRIU's fault injection 127 (FI_VDSO_TRAMPOLINES) forces the proxy
    force_proxy = force_proxy or os.environ.get("CRIU_FAULT") == "127"
    for p in plan.live:
        p.vdso_plan = check_vdso(p, runtime, force_proxy)
    log.info("Restoring %d process(es) from %s, root PID %d", len(plan.processes),
             images.path, plan.root.pid)

    with _Subreaper():
        forking = time.perf_counter()
        stubs = fork_tree(plan)
        forking = time.perf_counter() - forking
        try:
            pages = 0
            total = sum(p.pagemap.present_pages for p in plan.live)
            with progress_bar(total, show_progress, "restoring memory") as bar:
                for p in plan.live:
                    take_over(p)
                    pages += rebuild(plan, p, bar.update, fault)
            for p in plan.live:
                task_state.finish(p)  # creds, seccomp, scheduling, CPUs: last
            for p in plan.live:
                release(p)
        except BaseException:
            log.error("Restore failed; removing the processes it had started")
            stubs.kill()
            raise
        stubs.close()
    elapsed = time.perf_counter() - started
    _write_stats(images, forking, elapsed, pages)
    root = plan.root.pid
    if pidfile:
        fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, str(root).encode())
        os.close(fd)
    log.info("Restored %d process(es) (%d pages) in %.3f s", len(plan.processes), pages,
             elapsed)
    result = RestoreResult([p.pid for p in plan.processes], pages, images.path,
                           {"forking": round(forking, 6), "restore": round(elapsed, 6)})
    if not detach:
        _, status = os.waitpid(root, 0)
        result.exit_status = os.waitstatus_to_exitcode(status)
    return result


def _write_stats(images, forking, elapsed, pages):
    from .images.messages import classes
    stats = classes["stats_entry"]()
    r = stats.restore
    r.pages_compared = 0
    r.pages_skipped_cow = 0
    r.forking_time = int(forking * 1e6)
    r.restore_time = int(elapsed * 1e6)
    r.pages_restored = pages
    images.write_stats("stats-restore", stats)
