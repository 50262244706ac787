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
from ..images.chain import locate
from ..images.pagemap import PAGE_SIZE
from ..kernel import uffd
from ..inject.remote import take_fd
from ..kernel.sys import address_of
from . import server

log = logging.getLogger(__name__)

SOCKET_NAME = "lazy-pages.socket"
FAULT_CHUNK = 64 << 10      # what one fault brings in
BACKGROUND_CHUNK = 2 << 20  # what one background step copies
# a process handed over: its PID and how many (start, end) ranges follow
# (u64 pairs); its userfaultfd rides on the header (SCM_RIGHTS). PID 0 ends.
HEADER = struct.Struct("<iI")


ZERO = object()  # a page nobody has: zeros, as an untouched page reads


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
        fd = take_fd(task, task.syscall("userfaultfd", flags))
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
    adjacent VMAs); both ascend, so one walk over the two."""
    out, i = [], 0
    for v in sorted(vmas, key=lambda v: v.start):
        while i < len(runs) and runs[i].end <= v.start:
            i += 1
        if i < len(runs) and runs[i].vaddr < v.end:
            out.append(v)
    return out


# ---- the daemon ------------------------------------------------------------------

def _shift(source, delta):
    """A data source ((pages fd, offset), or None: ask the dump) moved on."""
    return None if source is None else (source[0], source[1] + delta)


class Remaining:
    """The pages still to bring into one mm: (dst start, dst end, source:
    (pages file fd, offset) or None, the dump kept them: ask it), ascending;
    ``pid`` names them for that dump (a forked child's pages are its
    parent's image's)."""

    def __init__(self, pid, ranges):
        self.pid = pid
        self.ranges = sorted(ranges, key=lambda r: r[0])

    def copy(self):
        return Remaining(self.pid, list(self.ranges))

    def find(self, address):
        i = bisect.bisect_right(self.ranges, address, key=lambda r: r[0]) - 1
        if i >= 0 and self.ranges[i][0] <= address < self.ranges[i][1]:
            return i
        return None

    def take(self, start, end):
        """Remove [start, end) from what remains (only the ranges it
        touches are rebuilt: a background copy takes one at a time)."""
        first = max(0, bisect.bisect_right(self.ranges, start, key=lambda r: r[0]) - 1)
        last = bisect.bisect_left(self.ranges, end, key=lambda r: r[0])
        out = []
        for s, e, off in self.ranges[first:last]:
            if e <= start or s >= end:
                out.append((s, e, off))
                continue
            if s < start:
                out.append((s, start, off))
            if e > end:
                out.append((end, e, _shift(off, end - s)))
        self.ranges[first:last] = out

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
        self.ranges = sorted(kept + moved, key=lambda r: r[0])


class Daemon:
    def __init__(self, images, source=None):
        self.images = images
        self.source = source  # server.LazySource: the dump that kept the pages
        self.fds = {}       # uffd -> Remaining
        self.pages_fds = {}  # path -> fd
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
        """Serve ``wanted`` (the ranges the restore left) of PID into fd.
        Each page's data is found through the parent chain where it lies
        (chain.locate, nothing copied first); what no image holds was kept
        back by a dump --lazy-pages and comes from it."""
        pagemap = self.images.pagemap(pid)
        located = locate(self.images.path, pagemap,
                         self.images.file_path("PAGES", pagemap.pages_id))
        pieces = []
        i = 0  # both lists ascend: one walk over the two
        for lo, hi in sorted(wanted):
            while i < len(located) and located[i][1] <= lo:
                i += 1
            position, j = lo, i
            while j < len(located) and located[j][0] < hi:
                start, end, path, offset = located[j]
                if start > position:
                    pieces.append((position, start, None))
                a, b = max(start, position), min(end, hi)
                if a < b:
                    pieces.append((a, b, (self._pages_fd(path), offset + a - start)))
                    position = b
                j += 1
            if position < hi:
                pieces.append((position, hi, None))
        if self.source is None and any(src is None for _, _, src in pieces):
            raise LazyError(f"PID {pid}'s images were dumped with --lazy-pages: give this "
                            "daemon --page-server --address --port of that dump")
        # UFFDIO_COPY fills within one VMA (ENOENT across a boundary): cut
        # where the image's VMAs begin and end
        cuts = sorted({a for v in self.images.read_one("MM", pid).vmas for a in (v.start, v.end)})
        ranges = []
        for lo, hi, src in pieces:
            for cut in cuts[bisect.bisect_right(cuts, lo):]:
                if cut >= hi:
                    break
                ranges.append((lo, cut, src))
                src, lo = _shift(src, cut - lo), cut
            ranges.append((lo, hi, src))
        os.set_blocking(fd, False)
        self.fds[fd] = Remaining(pid, ranges)
        log.info("PID %d: %d lazy page(s) to serve", pid,
                 sum(e - s for s, e, _ in ranges) // PAGE_SIZE)

    def _pages_fd(self, path):
        if path not in self.pages_fds:
            self.pages_fds[path] = os.open(path, os.O_RDONLY)
        return self.pages_fds[path]

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
                pages_fd, at = offset
                got = os.preadv(pages_fd, [view], at)
                if got != length:
                    raise LazyError(f"a pages file ended early at offset {at}")
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
        for fd in self.pages_fds.values():
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

