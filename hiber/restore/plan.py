"""Stage 1 of a restore: read every image and check it, creating nothing.

The Plan holds, for each process of pstree.img, what the later stages need
(core, mm, fs, fds, pagemap, threads' cores, the vdso decision), and the
tree's shared objects (files, shared memory). Everything a restore could
trip over later is checked here (checks.py), so that a refusal is one line
and leaves nothing behind.
"""

import os
from dataclasses import dataclass, field

from ..errors import RestoreError
from ..images import chain
from ..images.pagemap import PE_LAZY, PagesReader
from ..resources import core, cow, files, namespaces, vdso, vmanames
from . import checks


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
    pagemap: object = None                            # every run present (chain.py)
    pages: object = None                              # its PagesReader
    pages_path: str = ""                              # the file that reader reads
    resolved: object = None                           # chain.ResolvedPages, to close
    vdso_image: object = None
    vdso_plan: object = None                          # vdso.VdsoPlan: in place or proxy
    thread_cores: dict = field(default_factory=dict)  # tid -> core_entry, leader excluded
    children: list = field(default_factory=list)      # ProcessPlans, pre-order
    services: dict = field(default_factory=dict)      # its stub's helper fds
    share_ranges: set = field(default_factory=set)    # VMAs shared copy-on-write (cow.py)
    premapped: dict = field(default_factory=dict)     # in its stub: VMA start -> premap


class Plan:
    def __init__(self, images, options, check_pids=True, check_files=True):
        self.images = images
        self.lazy_pages = options.lazy_pages
        self.shell_job = shell_job = options.shell_job
        self.check_pids = check_pids
        self.hiber_pgid = os.getpgrp()
        self.shell_tty = _own_terminal() if shell_job else None
        checks.check_inventory(images, options)
        self.root_ids = images.inventory().root_ids
        self.process_ids = []  # (pid, task_kobj_ids_entry) of each live process
        self.files = files.FileImages(images, options)
        self.memfd_inodes = images.read_optional("MEMFD_INODE")
        tree = images.read("PSTREE")
        self.files.tree_pids = frozenset(t for e in tree for t in [e.pid, *e.threads])
        if not tree or tree[0].ppid != 0:
            raise RestoreError("pstree.img: the first process must be the root (ppid 0)")
        self.group_helpers = {}  # pid -> PIDs of the dead group leaders it stands in for
        self.processes = [self._process(p) for p in tree]
        self.by_pid = {p.pid: p for p in self.processes}
        self.root = self.processes[0]
        for p in self.processes[1:]:
            parent = self.by_pid.get(p.pstree.ppid)
            if parent is None:
                raise RestoreError(f"pstree.img: the parent {p.pstree.ppid} of {p.pid} is not "
                                   "listed before it")
            parent.children.append(p)
        checks.check_sessions(self)
        cow.plan_sharing(self)
        if check_files:
            # what restore cannot rebuild; plan_vdso inspects such images too
            namespaces.refuse_namespaced_images(self.root_ids, self.process_ids, images)
            checks.check_files(self)

    def close(self):
        for p in self.processes:
            if p.resolved is not None:
                p.resolved.close()

    @property
    def live(self):
        return [p for p in self.processes if not p.zombie]

    def _process(self, entry):
        pid = entry.pid
        if self.check_pids:
            checks.check_pids_free(entry.threads or [pid])
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
        self.process_ids.append((pid, ids))
        plan = ProcessPlan(pid, entry, c, mm=self.images.read_one("MM", pid),
                           fs=self.images.read_one("FS", pid),
                           fdinfo=self.images.read_optional("FDINFO", ids.files_id))
        for tid in entry.threads[1:]:
            plan.thread_cores[tid] = self.images.read_one("CORE", tid)
        pagemap = self.images.pagemap(pid)
        # pages left to a parent image are gathered into one file first
        plan.resolved = chain.resolve(self.images.path, pagemap,
                                      self.images.file_path("PAGES", pagemap.pages_id), pid,
                                      keep_lazy=self.lazy_pages)
        plan.pagemap, plan.pages_path = plan.resolved.pagemap, plan.resolved.path
        kept = next((r for r in plan.pagemap.runs if not r.present and r.flags & PE_LAZY),
                    None)
        if kept is not None and not self.lazy_pages:
            raise RestoreError(f"pagemap-{pid}.img: the pages at 0x{kept.vaddr:x} are not in "
                               "the images (dumped with --lazy-pages): restore with "
                               "--lazy-pages, and a lazy-pages daemon fetching from that dump")
        plan.pages = PagesReader(plan.pagemap, plan.pages_path)  # checks the pages file size
        plan.vdso_image = vdso.image_layout(plan.mm.vmas, plan.pages.read_range)
        vmanames.refuse_names_this_kernel_lacks(pid, plan.mm.vmas)
        return plan

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
        """Temporary and helper fds live above every fd of every process,
        and above every fd number an epoll watch was added with."""
        return max([e.fd for p in self.live for e in p.fdinfo] + [2]
                   + self.files.watched_numbers()) + 1


def _own_terminal():
    """The terminal hiber runs on, if any (stdin, stdout or stderr)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.ttyname(fd)
        except OSError:
            continue
    return None
