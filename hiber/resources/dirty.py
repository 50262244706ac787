"""Dirty-page tracking between dumps (pre-dump, dump --track-mem).

CRIU tracks with soft-dirty bits, which this kernel lacks (MEM_SOFT_DIRTY
is off; kernel-facts). hiber tracks with userfaultfd write-protection in
asynchronous mode instead: every private VMA whose pages a dump takes is
registered and write-protected once its pages are in the images; a write
afterwards clears the page's uffd-wp bit, and the next dump asks
PAGEMAP_SCAN which pages are PAGE_IS_WRITTEN. A page populated since is born
without the bit, so it counts as written too: a page is left to the parent
image only when it was protected then and is untouched since.

The userfaultfd is made inside each process (an injected userfaultfd()),
taken out with pidfd_getfd and closed in the process again, so the program
sees no new descriptor. Registration ends when the last holder of the fd
closes it, so between two hiber commands a *tracker* holds them: a small
detached process forked from the dump that only waits, and ends when the
tracked processes have all exited or the next dump retires it. Where it is
and which fd tracks which process is in ``hiber-track.json`` in the images
dir (a file of hiber's own; CRIU and crit ignore it).

Each step falls back to a full copy, never to a wrong parent reference: no
tracker, a process that is not the one tracked (its start time differs), a
VMA that could not be registered, or a page the parent chain does not hold.
"""

import bisect
import json
import logging
import os
import select
import signal

from ..images import vma as V
from ..images.pagemap import PAGE_SIZE, PE_PARENT, read_pagemap
from ..inject.remote import RemoteTask, find_gadgets, take_fd
from ..kernel import proc, uffd
from ..kernel.sys import pidfd_getfd, pidfd_open

log = logging.getLogger(__name__)

TRACK_FILE = "hiber-track.json"
PARENT_LINK = "parent"  # CRIU's name for the link to the previous images dir


def trackable(v):
    """VMAs whose pages a dump takes from the task's page tables and that
    write-protection can follow: private, not the vdso/vvar/guard areas,
    not hugetlb (always copied whole) and not droppable ones."""
    return (V.is_private(v)
            and not v.status & (V.VMA_AREA_VVAR | V.VMA_AREA_GUARD | V.VMA_AREA_VDSO
                                | V.VMA_AREA_VSYSCALL | V.VMA_AREA_AIORING)
            and not v.flags & (V.MAP_HUGETLB | V.MAP_DROPPABLE))


# ---- the previous dump: its tracker, and the pages its chain holds -------------

class ParentPages:
    """The page ranges a parent image chain holds for one process: an entry
    present there, or itself in its own parent."""

    def __init__(self, runs):
        runs = sorted((r.vaddr, r.end) for r in runs if r.present or r.flags & PE_PARENT)
        self.starts = [s for s, _ in runs]
        self.runs = runs

    def cover(self, start, end):
        """Yield (lo, hi, held) pieces of [start, end): held when the chain has them."""
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        position = start
        while position < end:
            while i < len(self.runs) and self.runs[i][1] <= position:
                i += 1
            if i == len(self.runs) or self.runs[i][0] >= end:
                yield position, end, False
                return
            lo, hi = self.runs[i]
            if lo > position:
                yield position, lo, False
                position = lo
            stop = min(hi, end)
            yield position, stop, True
            position = stop


class Previous:
    """What the previous dump left: per process, our copy of its userfaultfd
    and the pages its images hold."""

    def __init__(self):
        self.fds = {}       # pid -> our fd of the process's userfaultfd
        self.parent = {}    # pid -> ParentPages
        self.tracker = None  # (pid, start time) of the tracker to retire

    def tracked(self, pid):
        return pid in self.fds and pid in self.parent

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def parent_dir(images_path, prev):
    """--prev-images-dir is relative to the images dir, as with criu."""
    return os.path.normpath(os.path.join(images_path, prev))


def _start_time(pid):
    """The start time of a live process (None for a zombie or none at all):
    with the PID, it names one process across PID reuse."""
    try:
        st = proc.stat(pid)
    except (OSError, proc.NoSuchProcess):
        return None
    return None if st.state in "ZX" else st.start_time


def adopt(images_path, prev, pids):
    """Take over the tracking the dump in ``prev`` left for ``pids``. A
    missing or dead tracker, or a process that is not the one it tracked,
    means a full copy of that process (logged, as criu warns of PID reuse)."""
    found = Previous()
    if prev is None:
        return found
    where = parent_dir(images_path, prev)
    try:
        with open(os.path.join(where, TRACK_FILE)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        log.warning("%s has no memory tracking record: every page is copied", where)
        return found
    tracker, tracker_start = record.get("tracker"), record.get("start")
    if not tracker or _start_time(tracker) != tracker_start:
        log.warning("the tracker of %s is gone: every page is copied", where)
        return found
    found.tracker = (tracker, tracker_start)
    try:
        holder = pidfd_open(tracker)
    except OSError as e:
        log.warning("cannot reach the tracker %d: %s; every page is copied", tracker, e.strerror)
        return found
    try:
        for pid in pids:
            entry = record.get("processes", {}).get(str(pid))
            if entry is None or _start_time(pid) != entry["start"]:
                log.warning("PID %d is not the process %s tracked: its pages are all copied",
                            pid, where)
                continue
            pagemap_path = os.path.join(where, f"pagemap-{pid}.img")
            if not os.path.exists(pagemap_path):
                continue
            try:
                fd = pidfd_getfd(holder, entry["fd"])
            except OSError as e:  # the tracker is exiting
                log.warning("cannot take PID %d's tracking from the tracker %d (%s): its "
                            "pages are all copied", pid, tracker, e.strerror)
                continue
            found.fds[pid] = fd
            found.parent[pid] = ParentPages(read_pagemap(pagemap_path).runs)
    finally:
        os.close(holder)
    return found


def split_by_parent(runs_with_written, parent):
    """(vaddr, nr_pages, in_parent) pieces of runs of (start, end, written):
    a page is left to the parent only if unwritten and held by the chain."""
    for start, end, written in runs_with_written:
        if written or parent is None:
            yield start, (end - start) // PAGE_SIZE, False
            continue
        for lo, hi, held in parent.cover(start, end):
            yield lo, (hi - lo) // PAGE_SIZE, held


# ---- arming the next round ---------------------------------------------------

def open_tracking_fd(pid, remote):
    """Our fd of a new userfaultfd of the task's mm, handshaken for
    asynchronous write-protection; None where the task's seccomp filters or
    the kernel say no (the next dump then copies every page)."""
    flags = os.O_CLOEXEC | os.O_NONBLOCK
    if not remote.filters_allow("userfaultfd", flags):
        return None
    in_task = remote.syscall_raw("userfaultfd", flags)
    if in_task < 0:
        log.warning("PID %d: userfaultfd() failed (%s): its next dump copies every page",
                    pid, os.strerror(-in_task))
        return None
    ours = take_fd(remote, in_task, close=remote.undo_syscall)
    try:
        uffd.enable_async_wp(ours)
    except OSError as e:
        os.close(ours)
        log.warning("PID %d: no asynchronous write-protection (%s)", pid, e.strerror)
        return None
    return ours


def protect(pid, fd, vmas):
    """Register and write-protect every trackable VMA; the ones refused
    (another userfaultfd holds them, a kind the kernel cannot protect) stay
    unprotected, so their pages all count as written next time."""
    for v in vmas:
        if not trackable(v):
            continue
        length = v.end - v.start
        try:
            uffd.register_wp(fd, v.start, length)
            uffd.write_protect(fd, v.start, length)
        except OSError as e:
            log.info("PID %d: %x-%x not tracked (%s)", pid, v.start, v.end, e.strerror)


# ---- the tracker -----------------------------------------------------------------

def leave_tracker(images_path, fds):
    """Fork the process that holds ``fds`` (pid -> our fd) until the tracked
    processes are gone or the next dump retires it, and write where it is.
    The fds keep their numbers in the tracker (fork copies the table)."""
    pids = {pid: _start_time(pid) for pid in fds}
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            os.close(read_end)
            os.setsid()
            if os.fork():
                os._exit(0)  # the tracker is reparented: it outlives this dump
            _tracker_main(fds, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(first, 0)
    with os.fdopen(read_end, "rb") as f:
        tracker = int(f.read() or b"0")
    if not tracker:
        raise OSError("the memory tracker did not start")
    record = {"tracker": tracker, "start": _start_time(tracker),
              "processes": {str(pid): {"fd": fds[pid], "start": start}
                            for pid, start in pids.items()}}
    path = os.path.join(images_path, TRACK_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.rename(path + ".tmp", path)
    log.info("Memory tracker %d holds the tracking of %d process(es)", tracker, len(fds))
    return tracker


def _tracker_main(fds, report_fd):
    """Keep the userfaultfds open and wait: a pidfd per tracked process turns
    readable when it exits; once all have, the tracking is worthless."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    watched = []
    for pid in fds:
        try:
            watched.append(pidfd_open(pid))
        except OSError:
            pass
    keep = set(fds.values()) | set(watched) | {0, 1, 2, report_fd}
    _close_others(keep)
    os.write(report_fd, str(os.getpid()).encode())
    os.close(report_fd)
    poller = select.poll()
    for w in watched:
        poller.register(w, select.POLLIN)
    while watched:
        poller.poll()
        # a pidfd stays readable once its process is gone: stop polling it
        for w in list(watched):
            if select.select([w], [], [], 0)[0]:
                poller.unregister(w)
                watched.remove(w)


def _close_others(keep):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def retire(previous):
    """End the tracker whose tracking this dump took over (its fds are ours
    or a new tracker's now): its record must not be trusted again."""
    if previous.tracker is None:
        return
    pid, start = previous.tracker
    if _start_time(pid) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    previous.tracker = None


def start_next_round(images_path, processes, previous):
    """After a dump whose tree runs on: protect the pages of every process
    in ``processes`` ((pid, vmas) pairs, all still frozen) and leave a
    tracker holding the fds, for a dump with this one as its parent.

    The previous tracker is retired in any case: once pages are protected
    again, what it recorded no longer matches its images."""
    fds = {}
    try:
        for pid, vmas in processes:
            fd = previous.fds.pop(pid, None)
            if fd is None:
                with RemoteTask(pid, pid, find_gadgets(pid)) as remote:
                    fd = open_tracking_fd(pid, remote)
                if fd is None:
                    continue
            fds[pid] = fd
            protect(pid, fd, vmas)
        if fds:
            leave_tracker(images_path, fds)
    finally:
        for fd in fds.values():
            os.close(fd)
        retire(previous)
        previous.close()


def link_parent(images_path, prev):
    """The ``parent`` symlink CRIU leaves, holding --prev-images-dir as given
    (relative to the images dir)."""
    link = os.path.join(images_path, PARENT_LINK)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(prev, link)
