"""The restore sequence, as named stages:

1. read_images    read and check every image; refuse before creating anything
2. fork_stub      clone3 with the dumped PID; the child, still a copy of
                  hiber, sets up session, fds, cwd, umask, rlimits, then waits
3. take_over      PTRACE_SEIZE the stub (EXITKILL: if hiber dies, so does it)
4. rebuild        by injected syscalls: drop the stub's memory, map every VMA
                  of the image, fill its pages, move the vdso in place, put
                  back mm fields, signals, timers, thread state, credentials
5. release        registers and signal mask, then let it run

A failure at any stage kills and reaps the stub: nothing half-made is left.
"""

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
from .resources import core, files, memory, shmem, vdso

log = logging.getLogger(__name__)

SCRATCH_SIZE = 64 << 10
STUB_TIMEOUT = 30
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
    mm: object
    fs: object
    fdinfo: list
    pagemap: object
    vdso_image: object = None
    thread_cores: dict = field(default_factory=dict)  # tid -> core_entry, leader excluded


@dataclass
class RestoreResult:
    pids: list
    pages_restored: int
    images_dir: str
    times: dict = field(default_factory=dict)
    exit_status: int | None = None


# ---- 1. read and check ------------------------------------------------------

class Plan:
    def __init__(self, images, allow_uprobes, shell_job):
        self.images = images
        self.shell_job = shell_job
        inventory = images.inventory()
        if inventory.img_version != 2 or not inventory.fdinfo_per_id:
            raise RestoreError(f"{images.path}: image version {inventory.img_version} is not "
                               "supported (hiber reads CRIU's version 2 images)")
        if inventory.allow_uprobes and not allow_uprobes:
            raise RestoreError(UPROBES_MESSAGE)
        tree = images.read("PSTREE")
        if len(tree) != 1:
            raise RestoreError("restoring process trees is not supported yet: these images "
                               f"hold {len(tree)} processes")
        self.files = {f.id: f for f in images.read_optional("FILES")}
        self.pipe_data = {e.message.pipe_id: (e.extra or b"", e.message.size)
                          for e in images.read_entries("PIPES_DATA")} \
            if images.exists("PIPES_DATA") else {}
        self.fifo_data = {e.message.pipe_id: (e.extra or b"", e.message.size)
                          for e in images.read_entries("FIFO_DATA")} \
            if images.exists("FIFO_DATA") else {}
        self.memfd_inodes = images.read_optional("MEMFD_INODE")
        self.processes = [self._process(p) for p in tree]
        self.root = self.processes[0]
        self._check_files()

    def _process(self, p):
        pid = p.pid
        if proc.exists(pid):
            raise RestoreError(f"PID {pid} is already in use: stop that process (or restore "
                               "in a fresh PID namespace) and try again")
        c = self.images.read_one("CORE", pid)
        if c.mtype != 1 or not c.HasField("thread_info") or not c.HasField("tc"):
            raise RestoreError(f"core-{pid}.img: not an x86-64 task with registers")
        if c.tc.task_state not in (core.TASK_ALIVE, core.TASK_STOPPED):
            raise RestoreError(f"PID {pid} was a zombie: restoring zombies is not supported yet")
        if p.sid != pid and not self.shell_job:
            raise RestoreError(f"PID {pid} was not a session leader (its session is {p.sid}): "
                               "restore it with --shell-job (-j) to put it in hiber's session")
        ids = self.images.read_one("IDS", pid)
        plan = ProcessPlan(pid, p, c, self.images.read_one("MM", pid),
                           self.images.read_one("FS", pid),
                           self.images.read_optional("FDINFO", ids.files_id),
                           self.images.pagemap(pid))
        for tid in p.threads[1:]:
            if proc.exists(tid):
                raise RestoreError(f"TID {tid} (a thread of PID {pid}) is already in use: "
                                   "stop that process and try again")
            plan.thread_cores[tid] = self.images.read_one("CORE", tid)
        reader = self.images.pages_reader(plan.pagemap)  # checks the pages file size
        plan.vdso_image = vdso.image_layout(plan.mm.vmas,
                                            lambda start, size: _read_dumped(plan, reader,
                                                                             start, size))
        return plan

    def _check_files(self):
        used = set()
        for p in self.processes:
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


def _check_reg_file(reg):
    try:
        info = os.stat(reg.name)
    except OSError as e:
        raise RestoreError(f"{reg.name}: {e.strerror}; the process had it open or mapped "
                           "and needs it back") from None
    if reg.HasField("size") and info.st_size != reg.size:
        raise RestoreError(f"{reg.name} changed size since the dump ({reg.size} bytes then, "
                           f"{info.st_size} now): restoring would corrupt the process")


def _read_dumped(plan, reader, start, size):
    run = next((r for r in plan.pagemap.runs if r.present and r.vaddr <= start < r.end), None)
    if run is None or start + size > run.end:
        raise RestoreError(f"mm-{plan.pid}.img: the vdso at 0x{start:x} has no dumped pages")
    return reader.read(run)[start - run.vaddr:start - run.vaddr + size]


def check_vdso(plan, runtime):
    """Until the proxy lands: the image's vdso must match this kernel's."""
    image = plan.vdso_image
    if image is None or runtime is None:
        return
    if not image.matches(runtime):
        raise RestoreError(f"PID {plan.pid}: the dumped vdso differs from this kernel's "
                           "(dumped on another kernel?); restoring through a vdso proxy is "
                           "not supported yet")


# ---- 2. the stub --------------------------------------------------------------

@dataclass
class Stub:
    pid: int
    status_r: int
    control_w: int
    services: dict = field(default_factory=dict)
    seized: bool = False

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    def close(self):
        for fd in (self.status_r, self.control_w):
            try:
                os.close(fd)
            except OSError:
                pass


def fork_stub(plan, p):
    status_r, status_w = os.pipe()
    control_r, control_w = os.pipe()
    try:
        pid = fork_with_pid(p.pid)
    except OSError as e:
        for fd in (status_r, status_w, control_r, control_w):
            os.close(fd)
        raise RestoreError(f"cannot create PID {p.pid}: {e.strerror}") from None
    if pid == 0:
        # the child: never returns into hiber
        try:
            os.close(status_r)
            os.close(control_w)
            stub_main(plan, p, status_w, control_r)
        except BaseException as e:  # noqa: B036 - report anything, then vanish
            try:
                os.write(status_w, ("E " + f"{type(e).__name__}: {e}".replace("\n", " ")
                                    + "\n").encode())
            except OSError:
                pass
        os._exit(1)
    os.close(status_w)
    os.close(control_r)
    stub = Stub(pid, status_r, control_w)
    try:
        stub.services = _read_stub_report(stub)
    except BaseException:
        stub.kill()
        stub.close()
        raise
    return stub


def _read_stub_report(stub):
    ready, _, _ = select.select([stub.status_r], [], [], STUB_TIMEOUT)
    line = os.read(stub.status_r, 1 << 16).decode() if ready else ""
    if not line.startswith("{"):
        reason = line[2:].strip() if line.startswith("E ") else "it did not answer"
        raise RestoreError(f"setting up PID {stub.pid} failed: {reason}")
    return json.loads(line)


def stub_main(plan, p, status_w, control_r):
    """Runs in the child: everything easiest done from inside, in Python."""
    floor = max([e.fd for e in p.fdinfo] + [2]) + 1
    keep = sorted({status_w, control_r})
    os.closerange(0, keep[0])
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, 1 << 20)
    status_w, control_r = files.high_dup(status_w, floor), files.high_dup(control_r, floor)

    if p.pstree.sid == p.pid:
        os.setsid()
    elif p.pstree.pgid == p.pid:
        os.setpgid(0, 0)

    shared = shmem.StubObjects(plan.images, plan.memfd_inodes, floor)
    stub_files = files.StubFiles(plan.files, plan.pipe_data, plan.fifo_data, shared, floor)
    stub_files.install(p.fdinfo)

    services = {"status": status_w, "control": control_r, "map": {}, "shmem": {}}
    pages = plan.images.file_path("PAGES", p.pagemap.pages_id)
    services["pages"] = files.high_dup(os.open(pages, os.O_RDONLY), floor)
    services["exe"] = files.high_dup(
        os.open(plan.files[p.mm.exe_file_id].reg.name, os.O_RDONLY), floor)
    for v in p.mm.vmas:
        if not v.status & (V.VMA_FILE_PRIVATE | V.VMA_FILE_SHARED):
            continue
        f = plan.files[v.shmid]
        if f.HasField("memfd"):
            services["shmem"][str(f.memfd.inode_id)] = shared.service_fd(f.memfd.inode_id)
            continue
        key = f"{v.shmid}:{v.fdflags if v.HasField('fdflags') else 0}"
        if key not in services["map"]:
            mode = v.fdflags if v.HasField("fdflags") else os.O_RDONLY
            services["map"][key] = files.high_dup(os.open(f.reg.name, mode), floor)
    for inode_id, fd in shared.fds.items():
        services["shmem"][str(inode_id)] = fd

    cwd = plan.files[p.fs.cwd_id].reg.name
    root = plan.files[p.fs.root_id].reg.name
    if root != "/":
        os.chroot(root)
    os.chdir(cwd)
    os.umask(p.fs.umask)
    _set_rlimits(p.core.tc.rlimits.rlimits)

    os.write(status_w, (json.dumps(services) + "\n").encode())
    os.read(control_r, 1)  # hiber takes over while we sleep here


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

def take_over(stub):
    pt.seize(stub.pid, pt.PTRACE_O_EXITKILL | pt.PTRACE_O_TRACECLONE)
    stub.seized = True
    pt.interrupt(stub.pid)
    kind, sig = pt.stop_kind(pt.wait(stub.pid))
    if kind != "event-stop":
        raise RestoreError(f"PID {stub.pid}: the stub did not stop as expected ({kind} {sig})")


def rebuild(plan, p, stub, runtime, progress=None, fault=None):
    services = stub.services
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
        parked = park_kernel_areas(task, kernel_areas, occupied)

        def mapping_fd(v):
            f = plan.files[v.shmid]
            if f.HasField("memfd"):
                return services["shmem"][str(f.memfd.inode_id)]
            return services["map"][f"{v.shmid}:{v.fdflags if v.HasField('fdflags') else 0}"]

        mem = memory.MemoryRestore(task, p.mm.vmas, p.pagemap, services["pages"], mapping_fd,
                                   scratch, SCRATCH_SIZE)
        mem.unmap_stub([(scratch, scratch + SCRATCH_SIZE)] + [(s, e) for _, s, e in parked])
        mem.create_vmas()
        mem.fill_pages(progress)
        if fault == "rebuild":
            raise RestoreError("failure injected while rebuilding (test)")
        mem.finish()
        place_vdso(task, p, parked)

        core.restore_task(task, scratch, p.pid, p.core, p.mm, services["exe"])
        core.restore_thread(task, scratch, p.pid, p.pid, p.core)
        for tid, thread_core in p.thread_cores.items():
            create_thread(task, scratch, p.pid, tid)
            with RemoteTask(p.pid, tid, task.gadget) as thread:
                core.restore_thread(thread, scratch, p.pid, tid, thread_core)
        _seal_memfds(task, plan, services)
        for fd in _service_fds(services):
            task.syscall("close", fd)
        core.restore_creds(task, scratch, p.pid, p.pid, p.core.thread_core.creds)
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


def _service_fds(services):
    fds = [services["status"], services["control"], services["pages"], services["exe"]]
    return sorted(set(fds + list(services["map"].values()) + list(services["shmem"].values())))


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
    """In-place remap: the kernel's vdso+vvar go where the image had them."""
    image = p.vdso_image
    if image is None:
        return  # a process without vdso: nothing to put back (dropped at release)
    vvar_areas = [a for a in parked if a[0] != "[vdso]"]
    new_base = image.vvar_start if image.vvar_start is not None else image.vdso_start
    moved = move_kernel_areas(task, parked, new_base if vvar_areas else image.vdso_start)
    vdso_now = next(s for name, s, _ in moved if name == "[vdso]")
    if vdso_now != image.vdso_start:
        raise RestoreError(f"PID {p.pid}: the vdso landed at 0x{vdso_now:x}, not at "
                           f"0x{image.vdso_start:x}")


def release(p):
    core.set_registers(p.pid, p.core, p.core.tc.blk_sigset)
    for tid, thread_core in p.thread_cores.items():
        core.set_registers(tid, thread_core, thread_core.thread_core.blk_sigset)
    if p.core.tc.task_state == core.TASK_STOPPED:
        os.kill(p.pid, p.core.tc.stop_signo or signal.SIGSTOP)
    for tid in [p.pid, *p.thread_cores]:
        pt.detach(tid)


# ---- the whole sequence ------------------------------------------------------

def restore(images_dir, detach=True, pidfile=None, shell_job=False, allow_uprobes=False,
            show_progress=False, fault=None):
    """Restore the tree in images_dir. Returns a RestoreResult; without
    ``detach`` it waits for the root to exit and reports its status."""
    started = time.perf_counter()
    images = ImageDir(images_dir)
    if pidfile and os.path.exists(pidfile):
        raise UsageError(f"--pidfile {pidfile} exists already; hiber will not overwrite it")
    plan = Plan(images, allow_uprobes, shell_job)
    runtime = vdso.runtime_layout()
    for p in plan.processes:
        check_vdso(p, runtime)
    p = plan.root
    log.info("Restoring PID %d from %s", p.pid, images.path)

    forking = time.perf_counter()
    stub = fork_stub(plan, p)
    forking = time.perf_counter() - forking
    try:
        take_over(stub)
        with _progress(p.pagemap.present_pages, show_progress) as bar:
            pages = rebuild(plan, p, stub, runtime, bar.update, fault)
        release(p)
    except BaseException:
        log.error("Restore failed; removing PID %d", p.pid)
        stub.kill()
        stub.close()
        raise
    stub.close()
    elapsed = time.perf_counter() - started
    _write_stats(images, forking, elapsed, pages)
    if pidfile:
        fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, str(p.pid).encode())
        os.close(fd)
    log.info("Restored PID %d (%d pages) in %.3f s", p.pid, pages, elapsed)
    result = RestoreResult([p.pid], pages, images.path,
                           {"forking": round(forking, 6), "restore": round(elapsed, 6)})
    if not detach:
        _, status = os.waitpid(p.pid, 0)
        result.exit_status = os.waitstatus_to_exitcode(status)
    return result


def _progress(total_pages, enabled):
    import sys

    from tqdm import tqdm
    return tqdm(total=total_pages, unit="page", unit_scale=True, delay=1, leave=False,
                desc="restoring memory", file=sys.stderr,
                disable=not (enabled and sys.stderr.isatty()))


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
