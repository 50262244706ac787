"""The dump sequence: freeze -> check -> collect -> write -> kill or resume.

Nothing is written before every process has been checked (uprobes,
unsupported mappings and files), and a failure at any step lets the tree go
exactly as it was: registers, signal masks and memory are only ever read,
and every injected change is undone by RemoteTask's context manager.
"""

import logging
import mmap
import os
import signal
import time
from dataclasses import dataclass, field

from . import actions
from .faults import fault_point
from .images.imagedir import ImageDir
from .images.messages import classes
from .inject.freeze import freeze_tree
from .inject import interrupts
from .inject.remote import RemoteTask, find_gadgets
from .kernel import proc
from .options import build_options
from .errors import UsageError
from .pages import server as page_server
from .pages.dedup import dedup
from .pages.server import LazyDumpWriter, LazyStore, PageServerClient
from .progress import progress_bar
from .resources import (cgroups, core, dirty, files, fs, locks, namespaces, ns, pages, task,
                        taskstate, vmas)
from .resources.seccomp import SeccompFilters
from .resources.sockets import inet

log = logging.getLogger(__name__)

PAGE_BUFFER_BYTES = 64 << 20


@dataclass
class DumpResult:
    pids: list
    threads: int
    pages_written: int
    images_dir: str
    times: dict = field(default_factory=dict)  # seconds per phase


@dataclass
class ProcessImages:
    """Everything collected for one process before anything is written."""
    pid: int
    ids: object = None
    cores: dict = field(default_factory=dict)  # tid -> core_entry
    mm: object = None
    pages: object = None                       # resources.pages.ProcessPages
    had_uprobes: bool = False
    fdinfo: list = field(default_factory=list)
    fs: object = None
    pages_id: int = 0


class _Clock:
    def __init__(self):
        self.marks = {}
        self._start = {}

    def start(self, name):
        self._start[name] = time.perf_counter()

    def stop(self, name):
        self.marks[name] = time.perf_counter() - self._start[name]

    def us(self, name):
        return int(self.marks.get(name, 0) * 1e6)


def dump(pid, images_dir, *, options=None, **given):
    """Checkpoint the tree rooted at ``pid`` into ``images_dir``.

    Options (hiber.Options, or its fields as keywords): by default the tree
    is killed once the images are complete (criu's behaviour);
    ``leave_running`` resumes it instead, ``leave_stopped`` leaves it stopped.
    """
    options = build_options("dump", options, **given)
    if options.lazy_pages and (options.leave_running or options.leave_stopped
                               or not options.port):
        raise UsageError("dump --lazy-pages serves the pages on --port once the tree is "
                         "gone: give --port, without --leave-running or --leave-stopped")
    clock = _Clock()
    images = ImageDir(images_dir, create=True)
    log.info("Dumping the tree of PID %d into %s", pid, images.path)
    connect_page_server(images, options)
    scripts = actions.ActionScripts(options.action_scripts, images.path, options.notify)
    scripts.run(actions.PRE_DUMP, pid)

    clock.start("freezing")
    tree = freeze_tree(pid)
    clock.stop("freezing")
    clock.start("frozen")
    log.info("Frozen %d process(es), %d thread(s) in %.1f ms", len(tree.processes),
             sum(1 for _ in tree.all_threads()), clock.marks["freezing"] * 1000)
    ids = task.IdAllocator()
    file_table = files.FileTable(options.shell_job, frozenset(tree.all_threads()),
                                 ids.ns_id(pid, "net"), options=options, ns_id=ids.ns_id)
    seccomp = SeccompFilters()
    previous = dirty.Previous()
    try:
        fault_point(options, "frozen")
        check_tree(tree, options.allow_uprobes, options.file_locks)
        cgroup_sets = cgroups.CgroupDump(options, pid)
        previous = dirty.adopt(images.path, options.prev_images_dir, live_pids(tree))
        collected = []
        next_pages_id = 1
        zombies = {p.pid: core.zombie_core(p.pid) for p in tree.processes.values()
                   if p.zombie}
        # sockets are looked up (sock_diag) from inside the tree's network namespace
        with ns.network_of(pid):
            for p in tree.processes.values():
                if p.zombie:
                    continue
                c = collect_process(tree, p, file_table, ids, seccomp, options,
                                    previous.parent.get(p.pid) if previous.tracked(p.pid)
                                    else None)
                for tid in sorted(c.cores, key=lambda t: t != p.pid):  # the leader first
                    c.cores[tid].thread_core.cg_set = cgroup_sets.set_of(p.pid, tid)
                # CRIU numbers a process's shared objects before its own pages (§1.7)
                next_pages_id = file_table.shmem.assign_pages_ids(next_pages_id)
                c.pages_id = next_pages_id
                next_pages_id += 1
                collected.append(c)
        next_pages_id = ns.dump(images, pid, collected[0].ids, next_pages_id)
        had_uprobes = any(c.had_uprobes for c in collected)
        file_table.finish()

        fault_point(options, "files")
        clock.start("memdump")
        lazy_store = LazyStore() if options.lazy_pages else None
        pages_written = write_memory(images, collected, file_table.shmem, options,
                                     lazy_store=lazy_store)
        clock.stop("memdump")
        clock.start("memwrite")
        more = [("CGROUP", None, cgroup_sets.image())]  # none when all is in hiber's
        if options.file_locks:
            more.append(("FILE_LOCKS", None, locks.dump(collected)))
        write_images(images, tree, collected, zombies, file_table, ids, seccomp, had_uprobes,
                     more)
        clock.stop("memwrite")
        fault_point(options, "written")
        # a migration script may say "don't kill it": the tree runs on and
        # the dump fails with the script's status, as with criu
        scripts.run(actions.POST_DUMP, pid)
        link_to_parent(images, options, collected, previous,
                       track=options.track_mem and (options.leave_running
                                                    or options.leave_stopped))
    except BaseException:
        log.error("Dump failed; letting the tree run on as it was")
        inet.release_connections(file_table, tree_killed=False)  # network lock: off
        file_table.release(failed=True)  # the links a dump made for deleted files
        tree.thaw()
        raise
    finally:
        release_dump(images, file_table, previous)
    clock.stop("frozen")
    write_stats(images, clock, collected, pages_written, file_table.shmem)
    # the tree is killed or its tracking passed on: the tracker whose record
    # this dump used has nothing left to track
    dirty.retire(previous)

    if options.leave_running:
        inet.release_connections(file_table, tree_killed=False)  # network lock: off
        tree.thaw()
        log.info("Dump finished; the tree runs on")
    elif options.leave_stopped:
        inet.release_connections(file_table, tree_killed=False)  # network lock: off
        for pid_ in tree.processes:
            os.kill(pid_, signal.SIGSTOP)
        tree.thaw()
        log.info("Dump finished; the tree is left stopped")
    else:
        tree.kill()
        # network lock: kept for the restore; the connections close in repair mode
        inet.release_connections(file_table, tree_killed=True)
        log.info("Dump finished; the tree was killed")
    if lazy_store is not None:
        serve_kept_pages(lazy_store, options)
    return DumpResult(list(tree.processes), sum(1 for _ in tree.all_threads()),
                      pages_written, images.path,
                      {k: round(v, 6) for k, v in clock.marks.items()})


def check_tree(tree, allow_uprobes, file_locks=False):
    """Refuse early what cannot be dumped, before touching anything."""
    live = live_pids(tree)
    namespaces.refuse_foreign_namespaces(live)
    if not file_locks:
        locks.refuse_file_locks(live)
    for p in tree.processes.values():
        if p.zombie:
            continue  # nothing mapped, nothing to check
        for m in proc.maps(p.pid):
            vmas.refuse_uprobes(p.pid, m, allow_uprobes)


def live_pids(tree):
    return [p.pid for p in tree.processes.values() if not p.zombie]


def collect_process(tree, frozen, file_table, ids, seccomp, options, parent_pages=None):
    pid = frozen.pid
    out = ProcessImages(pid, ids=ids.ids(pid))
    gadget = find_gadgets(pid)

    # 1. what only the task can tell: injected syscalls, undone on exit
    with RemoteTask(pid, pid, gadget) as leader:
        scratch = leader.scratch(4096)
        brk = leader.syscall("brk", 0)
        dumpable = leader.syscall("prctl", core.PR_GET_DUMPABLE)
        thp_disabled = leader.syscall("prctl", core.PR_GET_THP_DISABLE)
        umask = int(proc.status(pid)["Umask"], 8)
        tc = core.task_core(pid, frozen, leader, scratch)
        fault_point(options, "inject")
        for tid in frozen.threads:
            if tid == pid:
                out.cores[tid] = _thread_core_entry(pid, tid, leader, scratch, tc)
            else:
                with RemoteTask(pid, tid, gadget) as thread:
                    out.cores[tid] = _thread_core_entry(pid, tid, thread, scratch)
    # seccomp filters and CPU affinity: all threads stopped, none pinned by a RemoteTask
    taskstate.dump_threads(pid, out.cores, seccomp)

    # 2. memory layout and files, read from outside (the scratch page is gone)
    fault_point(options, "memory")
    exe_id = file_table.path_entry(pid, f"/proc/{pid}/exe", "exe")
    found = vmas.collect(pid, file_table, options.allow_uprobes)
    out.had_uprobes = found.had_uprobes
    out.pages = pages.ProcessPages(pid, found.vmas, parent_pages)
    out.mm = vmas.fill_mm_entry(pid, found.vmas, exe_id, brk, dumpable, thp_disabled)
    out.fdinfo = files.dump_fds(pid, file_table)
    out.fs = fs.dump_fs(pid, file_table, umask)
    return out


def _thread_core_entry(pid, tid, remote, scratch, tc=None):
    entry = classes["core_entry"](mtype=1)
    entry.thread_info.CopyFrom(core.thread_info(tid, remote, scratch))
    if tc is not None:
        entry.tc.CopyFrom(tc)
    entry.thread_core.CopyFrom(core.thread_core(pid, tid, remote, tc is not None, scratch))
    return entry


def serve_kept_pages(store, options):
    """dump --lazy-pages: the lazy pages, kept in memory, go to the restoring
    side's lazy-pages daemon as it asks for them (lazy migration)."""
    try:
        listener = page_server.listen(options.address, options.port)
        if options.status_fd is not None:
            os.write(options.status_fd, b"\0")
            os.close(options.status_fd)
        log.info("Serving the lazy pages on port %d", options.port)
        served = page_server.serve_lazy(listener, store)
        log.info("Lazy pages: %d page(s) sent", served)
    finally:
        store.close()


def write_memory(images, collected, shared, options, with_shared=True, lazy_store=None):
    """memfd.img and pagemap-shmem-*, then pagemap-PID.img and pages-N.img.
    A pre-dump leaves shared memory to the dump (``with_shared`` False)."""
    zero_pfn = pages.zero_page_pfn()
    # an anonymous mapping, not a bytearray: only the pages a dump actually
    # copies through get touched (a bytearray would zero all 64 MiB first)
    buffer = mmap.mmap(-1, PAGE_BUFFER_BYTES)
    if with_shared:
        shared.write(images, buffer)
    runs = {c.pid: list(c.pages.page_runs(zero_pfn)) for c in collected}
    to_write = sum(n for pid_runs in runs.values() for _, n, _ in pid_runs)
    total = 0
    with progress_bar(to_write, options.show_progress, "dumping memory") as bar:
        for c in collected:
            with images.pagemap_writer(c.pid, c.pages_id) as writer:
                if lazy_store is not None:
                    writer = LazyDumpWriter(writer, lazy_store, c.pid)
                c.pages.write_pages(writer, runs[c.pid], buffer,
                                    interrupts.checked(bar.update))
                if lazy_store is not None:
                    # kept back for the lazy-pages daemon, not in the images
                    c.pages.pages_written -= writer.pages_kept
                    c.pages.pages_lazy = writer.pages_kept
                fault_point(options, "pages")
            total += c.pages.pages_written
            log.info("PID %d: %d page(s) of %d scanned written to pages-%d.img", c.pid,
                     c.pages.pages_written, c.pages.pages_scanned, c.pages_id)
    if images.page_server is not None:
        images.page_server.finish()  # the server confirms every page is written
    return total


def link_to_parent(images, options, collected, previous, track):
    """Once the images are complete: the parent link (and --auto-dedup), then,
    for a tree that runs on, its writes tracked for the next dump."""
    if options.prev_images_dir:
        dirty.link_parent(images.path, options.prev_images_dir)
        if options.auto_dedup and images.page_server is None:
            dedup(images.path)
    if track:
        dirty.start_next_round(images.path, [(c.pid, c.pages.vmas) for c in collected],
                               previous)


def release_dump(images, file_table, previous):
    """What a dump holds open until it ends, however it ends."""
    file_table.release(failed=False)
    file_table.shmem.close()
    previous.close()
    if images.page_server is not None:
        images.page_server.close()


def connect_page_server(images, options):
    """--page-server: the pages go to the server, the rest to the images dir."""
    if options.page_server:
        if not options.port:
            raise UsageError("--page-server needs --port (and --address, if not this host)")
        images.page_server = PageServerClient(options.address, options.port)
        log.info("Sending pages to the page server at %s:%d", options.address or "localhost",
                 options.port)


def write_images(images, tree, collected, zombies, file_table, ids, seccomp, had_uprobes,
                 more=()):
    """Every image but the pages; more: (type, key, entries or entry or None)."""
    images.write("PSTREE", None, task.pstree_entries(tree))
    for pid, entry in zombies.items():
        images.write("CORE", pid, [entry])  # a zombie has a core and nothing else
    for c in collected:
        for tid, entry in c.cores.items():
            images.write("CORE", tid, [entry])
        images.write("IDS", c.pid, [c.ids])
        images.write("MM", c.pid, [c.mm])
        images.write("FS", c.pid, [c.fs])
        images.write("FDINFO", c.ids.files_id, c.fdinfo)
    file_table.write_images(images)  # files.img, and pipe data and the like
    images.write("SECCOMP", None, [seccomp.entry])
    ns.time.dump(images, tree.root, collected[0].ids.time_ns_id)
    for type_name, key, entries in more:
        if entries is not None:
            images.write(type_name, key, entries if isinstance(entries, list) else [entries])
    # the inventory last: a dir without it is recognisably incomplete
    inventory = task.inventory(ids.root_ids, had_uprobes)
    inet.annotate_inventory(file_table, inventory)  # network lock: its table, --tcp-close
    images.write("INVENTORY", None, [inventory])


def write_stats(images, clock, collected, pages_written, shared):
    stats = classes["stats_entry"]()
    d = stats.dump
    d.freezing_time = clock.us("freezing")
    d.frozen_time = clock.us("frozen")
    d.memdump_time = clock.us("memdump")
    d.memwrite_time = clock.us("memwrite")
    d.pages_scanned = sum(c.pages.pages_scanned for c in collected)
    d.pages_skipped_parent = sum(c.pages.pages_in_parent for c in collected)
    d.pages_written = pages_written
    d.irmap_resolve = 0
    d.pages_lazy = sum(c.pages.pages_lazy for c in collected)
    d.page_pipes = 0
    d.page_pipe_bufs = 0
    d.shpages_scanned = shared.pages_scanned
    d.shpages_skipped_parent = 0
    d.shpages_written = shared.pages_written
    images.write_stats("stats-dump", stats)




def pre_dump(pid, images_dir, *, options=None, **given):
    """Copy the memory of the tree rooted at ``pid`` into ``images_dir`` and
    let it run on, tracking what it writes from now (criu pre-dump): a later
    dump or pre-dump with ``prev_images_dir`` naming this dir copies only the
    pages written since. Only memory is taken; a pre-dump is no image a
    restore can start from."""
    options = build_options("pre_dump", options, **given)
    clock = _Clock()
    images = ImageDir(images_dir, create=True)
    log.info("Pre-dumping the tree of PID %d into %s", pid, images.path)
    connect_page_server(images, options)
    clock.start("freezing")
    tree = freeze_tree(pid)
    clock.stop("freezing")
    clock.start("frozen")
    file_table = files.FileTable(options.shell_job, frozenset(tree.all_threads()),
                                 task.IdAllocator().root_ids.net_ns_id)
    previous = dirty.Previous()
    collected = []
    try:
        check_tree(tree, options.allow_uprobes, options.file_locks)
        previous = dirty.adopt(images.path, options.prev_images_dir, live_pids(tree))
        for n, p in enumerate(tree.processes.values(), start=1):
            if p.zombie:
                continue
            found = vmas.collect(p.pid, file_table, options.allow_uprobes)
            parent = previous.parent.get(p.pid) if previous.tracked(p.pid) else None
            c = ProcessImages(p.pid, pages=pages.ProcessPages(p.pid, found.vmas, parent),
                              pages_id=n)
            collected.append(c)
        clock.start("memdump")
        pages_written = write_memory(images, collected, file_table.shmem, options,
                                     with_shared=False)
        clock.stop("memdump")
        inventory = task.inventory(task.IdAllocator().root_ids, False)
        inventory.pre_dump_mode = 1 if options.pre_dump_mode == "splice" else 2
        images.write("INVENTORY", None, [inventory])
        link_to_parent(images, options, collected, previous, track=True)
    except BaseException:
        log.error("Pre-dump failed; letting the tree run on as it was")
        tree.thaw()
        raise
    finally:
        release_dump(images, file_table, previous)
    tree.thaw()
    clock.stop("frozen")
    write_stats(images, clock, collected, pages_written, file_table.shmem)
    log.info("Pre-dump finished: %d page(s) copied; the tree runs on", pages_written)
    return DumpResult(list(tree.processes), sum(1 for _ in tree.all_threads()),
                      pages_written, images.path,
                      {k: round(v, 6) for k, v in clock.marks.items()})
