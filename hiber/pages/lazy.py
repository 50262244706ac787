"""Lazy restore: the tree runs before its memory has arrived (criu
restore --lazy-pages with the lazy-pages daemon).

The restore fills every page but the lazy ones (PE_LAZY: private
anonymous memory, spec §1.8), then, for each process, makes a userfaultfd
inside it (an injected userfaultfd(), taken out with pidfd_getfd),
registers the VMAs holding lazy pages for missing-page faults, and hands
the fd with the PID to the daemon over ``lazy-pages.socket`` in the images
dir: one SCM_RIGHTS message each, a PID of 0 at the end.

The daemon answers each fault with UFFDIO_COPY of the faulting page's
neighbourhood (up to 64 KiB of the same run), and, whenever no fault waits,
copies the rest in the background, so every page arrives even if never
touched; it exits once all have. The non-cooperative events keep its
picture right: a fork brings a new fd with the same pages still to come, an
mremap moves them, MADV_DONTNEED and munmap drop them (what is dropped must
read as zero, not as the old contents).
"""

import bisect
import errno
import logging
import mmap
import os
import select
import socket
import struct

from ..errors import HiberError
from ..images.chain import resolve
from ..images.pagemap import PAGE_SIZE, PE_LAZY, PageRun
from ..kernel import uffd
from ..kernel.sys import address_of, pidfd_getfd, pidfd_open
from . import server

log = logging.getLogger(__name__)

SOCKET_NAME = "lazy-pages.socket"
FAULT_CHUNK = 64 << 10      # what one fault brings in
BACKGROUND_CHUNK = 2 << 20  # what one background step copies
# a process handed over: its PID and how many (start, end) ranges follow
# (u64 pairs); its userfaultfd rides on the header (SCM_RIGHTS). PID 0 ends.
HEADER = struct.Struct("<iI")


ZERO = -1  # a page nobody has: zeros, as an untouched page reads


class LazyError(HiberError):
    pass


# ---- the restoring side --------------------------------------------------------

class Handover:
    """The restore's connection to the lazy-pages daemon."""

    def __init__(self, images_path):
        path = os.path.join(images_path, SOCKET_NAME)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise LazyError(f"no lazy-pages daemon listens on {path} ({e.strerror}): start "
                            "`hiber lazy-pages -D DIR` first") from None

    def hand_over(self, task, pid, vmas, lazy_runs):
        """Register the VMAs holding ``lazy_runs`` in the (stopped) task for
        missing pages and give the daemon the fd."""
        flags = os.O_CLOEXEC | os.O_NONBLOCK
        in_task = task.syscall("userfaultfd", flags)
        try:
            holder = pidfd_open(pid)
            try:
                fd = pidfd_getfd(holder, in_task)
            finally:
                os.close(holder)
        finally:
            task.syscall("close", in_task)
        try:
            uffd.enable_missing(fd)
            for v in _vmas_holding(vmas, lazy_runs):
                uffd.register_missing(fd, v.start, v.end - v.start)
            # the ranges themselves: the daemon must not fill what the restore
            # filled another way (a copy-on-write premap)
            ranges = b"".join(struct.pack("<QQ", r.vaddr, r.end) for r in lazy_runs)
            socket.send_fds(self.sock, [HEADER.pack(pid, len(lazy_runs))], [fd])
            self.sock.sendall(ranges)
        finally:
            os.close(fd)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.sendall(HEADER.pack(0, 0))
            except OSError:
                pass
            self.sock.close()
            self.sock = None


def _vmas_holding(vmas, runs):
    """The VMAs a lazy run touches (a run of the pagemap may span two
    adjacent VMAs)."""
    return [v for v in vmas if any(r.vaddr < v.end and v.start < r.end for r in runs)]


def lazy_runs(pagemap):
    """Runs the daemon brings in: with data in the pages file, or, after a
    dump --lazy-pages (PE_LAZY without PE_PRESENT), kept by that dump."""
    return [r for r in pagemap.runs if r.flags & PE_LAZY]


# ---- the daemon ------------------------------------------------------------------

def _within(runs, wanted):
    """The parts of ``runs`` (PageRuns, ascending, with their data offsets)
    inside the ``wanted`` (start, end) ranges: one walk over both."""
    wanted = sorted(wanted)
    i = 0
    for r in runs:
        while i < len(wanted) and wanted[i][1] <= r.vaddr:
            i += 1
        j = i
        while j < len(wanted) and wanted[j][0] < r.end:
            a, b = max(wanted[j][0], r.vaddr), min(wanted[j][1], r.end)
            if a < b:
                yield PageRun(a, (b - a) // PAGE_SIZE, r.flags, _shift(r.pages_offset, a - r.vaddr))
            j += 1


def _shift(offset, delta):
    return None if offset is None else offset + delta


class Remaining:
    """The pages still to bring into one mm: (dst start, dst end, offset of
    the data in the pages file, or None: the dump kept them, ask it),
    ascending; ``pid`` names them for that dump (a forked child's pages are
    its parent's image's)."""

    def __init__(self, pid, pages_fd, ranges):
        self.pid = pid
        self.pages_fd = pages_fd
        self.ranges = sorted(ranges)

    def copy(self):
        return Remaining(self.pid, self.pages_fd, list(self.ranges))

    def find(self, address):
        for i, (start, end, _) in enumerate(self.ranges):
            if start <= address < end:
                return i
        return None

    def take(self, start, end):
        """Remove [start, end) from what remains."""
        out = []
        for s, e, off in self.ranges:
            if e <= start or s >= end:
                out.append((s, e, off))
                continue
            if s < start:
                out.append((s, start, off))
            if e > end:
                out.append((end, e, _shift(off, end - s)))
        self.ranges = out

    def move(self, old, new, length):
        """An mremap moved [old, old+length) to new."""
        moved, kept = [], []
        for s, e, off in self.ranges:
            lo, hi = max(s, old), min(e, old + length)
            if lo >= hi:
                kept.append((s, e, off))
                continue
            if s < lo:
                kept.append((s, lo, off))
            moved.append((lo - old + new, hi - old + new, _shift(off, lo - s)))
            if e > hi:
                kept.append((hi, e, _shift(off, hi - s)))
        self.ranges = sorted(kept + moved)


class Daemon:
    def __init__(self, images, source=None):
        self.images = images
        self.source = source  # server.LazySource: the dump that kept the pages
        self.fds = {}       # uffd -> Remaining
        self.pages_fds = []
        self.buffer = mmap.mmap(-1, BACKGROUND_CHUNK)
        self.base = address_of(self.buffer)
        self.copied = 0

    # receiving the processes
    def receive_one(self, conn, poller):
        """One message of the restore: a process and its fd (served from now
        on: the restore itself may touch its memory), or 0, the end.
        Returns False at the end."""
        msg, fds, _, _ = socket.recv_fds(conn, HEADER.size, 1, socket.MSG_WAITALL)
        if len(msg) < HEADER.size:
            raise LazyError("the restore went away before handing over its processes")
        pid, count = HEADER.unpack(msg)
        if pid == 0:
            return False
        if not fds:
            raise LazyError(f"PID {pid} came without its userfaultfd")
        raw = b""
        while len(raw) < count * 16:
            chunk = conn.recv(count * 16 - len(raw))
            if not chunk:
                raise LazyError(f"the restore went away while handing over PID {pid}")
            raw += chunk
        wanted = [struct.unpack_from("<QQ", raw, i * 16) for i in range(count)]
        self._add(pid, fds[0], wanted)
        poller.register(fds[0], select.POLLIN)
        return True

    def _add(self, pid, fd, wanted):
        pagemap = self.images.pagemap(pid)
        resolved = resolve(self.images.path, pagemap,
                           self.images.file_path("PAGES", pagemap.pages_id), pid)
        try:
            pages_fd = os.open(resolved.path, os.O_RDONLY)
        finally:
            resolved.close()
        self.pages_fds.append(pages_fd)
        # UFFDIO_COPY fills within one VMA (ENOENT across a boundary): cut
        # the runs where the image's VMAs begin and end
        cuts = sorted({a for v in self.images.read_one("MM", pid).vmas for a in (v.start, v.end)})
        ranges = []
        for r in _within(lazy_runs(resolved.pagemap), wanted):
            start = r.vaddr
            for cut in cuts[bisect.bisect_right(cuts, start):]:
                if cut >= r.end:
                    break
                ranges.append((start, cut, _shift(r.pages_offset, start - r.vaddr)))
                start = cut
            ranges.append((start, r.end, _shift(r.pages_offset, start - r.vaddr)))
        os.set_blocking(fd, False)
        if self.source is None and any(off is None for _, _, off in ranges):
            raise LazyError(f"PID {pid}'s images were dumped with --lazy-pages: give this "
                            "daemon --page-server --address --port of that dump")
        self.fds[fd] = Remaining(pid, pages_fd, ranges)
        log.info("PID %d: %d lazy page(s) to serve", pid,
                 sum(e - s for s, e, _ in ranges) // PAGE_SIZE)

    # serving
    def run(self, conn):
        """Serve faults (first) and copy the rest (when none waits) until
        the restore has handed everything over and every page is in."""
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        receiving = True
        while receiving or self.fds:
            busy = self._work_left()
            events = poller.poll(0 if busy and not receiving else 100 if busy else 1000)
            for fd, mask in events:
                if fd == conn.fileno():
                    if not self.receive_one(conn, poller):
                        poller.unregister(conn)
                        receiving = False
                    continue
                if mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    self._drop(fd, poller)
                    continue
                self._read_events(fd, poller)
            if not events:
                self._background_step(poller)
            if not receiving:
                for fd in [fd for fd, r in self.fds.items() if not r.ranges]:
                    self._drop(fd, poller)
        return self.copied

    def _work_left(self):
        return any(r.ranges for r in self.fds.values())

    def _drop(self, fd, poller):
        try:
            poller.unregister(fd)
        except KeyError:
            pass
        self.fds.pop(fd, None)
        os.close(fd)

    def _read_events(self, fd, poller):
        while fd in self.fds:
            try:
                raw = os.read(fd, uffd.MSG_SIZE)
            except BlockingIOError:
                return
            except OSError:
                self._drop(fd, poller)
                return
            if len(raw) < uffd.MSG_SIZE:
                self._drop(fd, poller)
                return
            event, a, b, c = uffd.parse_message(raw)
            remaining = self.fds[fd]
            if event == uffd.UFFD_EVENT_PAGEFAULT:
                self._fault(fd, remaining, b & ~(PAGE_SIZE - 1), poller)
            elif event == uffd.UFFD_EVENT_FORK:
                os.set_blocking(a, False)
                self.fds[a] = remaining.copy()
                poller.register(a, select.POLLIN)
            elif event == uffd.UFFD_EVENT_REMAP:
                remaining.move(a, b, c)
            elif event in (uffd.UFFD_EVENT_REMOVE, uffd.UFFD_EVENT_UNMAP):
                remaining.take(a, b)

    def _fault(self, fd, remaining, address, poller):
        i = remaining.find(address)
        if i is None:
            # not ours to fill (dropped since, or never lazy): a zero page
            # wakes the thread, as the kernel's own fault would have given
            self._copy(fd, remaining, address, address + PAGE_SIZE, ZERO, poller)
            return
        start, end, off = remaining.ranges[i]
        lo = max(start, address - (address - start) % FAULT_CHUNK)
        hi = min(end, lo + FAULT_CHUNK)
        self._copy(fd, remaining, lo, hi, _shift(off, lo - start), poller)

    def _background_step(self, poller):
        for fd, remaining in list(self.fds.items()):
            if remaining.ranges:
                start, end, off = remaining.ranges[0]
                hi = min(end, start + BACKGROUND_CHUNK)
                self._copy(fd, remaining, start, hi, off, poller)
                return

    def _copy(self, fd, remaining, start, end, offset, poller):
        length = end - start
        with memoryview(self.buffer) as whole, whole[:length] as view:
            if offset is ZERO:
                view[:] = bytes(length)
            elif offset is None:
                self.source.fetch(remaining.pid, start, view)
            else:
                got = os.preadv(remaining.pages_fd, [view], offset)
                if got != length:
                    raise LazyError(f"the pages file ended early at offset {offset}")
        position = start
        while position < end:
            try:
                n = uffd.copy(fd, position, self.base + (position - start), end - position)
            except BlockingIOError:
                # EAGAIN: the layout is changing; its event comes first
                self._read_events(fd, poller)
                return
            except FileExistsError:
                n = PAGE_SIZE  # someone filled this page: skip it
            except OSError as e:
                if e.errno == errno.ESRCH:
                    self._drop(fd, poller)  # the process is gone
                    return
                # closing the fd now would let the process read zeros where
                # its memory was: fail loudly instead
                raise LazyError(f"cannot bring in the pages at 0x{position:x}: "
                                f"{e.strerror}") from None
            if n <= 0:
                n = PAGE_SIZE
            position += n
            self.copied += n // PAGE_SIZE
        remaining.take(start, end)

    def close(self):
        for fd in list(self.fds):
            os.close(fd)
        self.fds.clear()
        for fd in self.pages_fds:
            os.close(fd)
        self.buffer.close()


def serve(images, *, status_fd=None, remote=None):
    """criu lazy-pages: wait for a restore on the images dir's socket, then
    serve its processes' lazy pages until every one has arrived; from the
    images dir, or from the dump at ``remote`` (address, port) that kept
    them (lazy migration)."""
    path = os.path.join(images.path, SOCKET_NAME)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    try:
        if status_fd is not None:
            os.write(status_fd, b"\0")
            os.close(status_fd)
        conn, _ = listener.accept()
    finally:
        listener.close()
        os.unlink(path)
    # the dump that kept the pages is reached once a restore has come: the
    # daemon may be started ahead of the dump (a migration prepares it)
    source = server.LazySource(*remote) if remote else None
    daemon = Daemon(images, source)
    try:
        with conn:
            copied = daemon.run(conn)
        if source is not None:
            source.finish()
    finally:
        daemon.close()
        if source is not None:
            source.client.close()
    log.info("Lazy pages: %d page(s) served", copied)
    return copied

