"""CRIU 4.2's page server protocol (criu/page-xfer.c), both ends.

A dump connects over TCP and sends, per pagemap, an OPEN2 naming it, then
one ADD_F per run of pages (the run's flags in the command's upper 16
bits, the data right after it when PE_PRESENT), and a CLOSE at the end,
which the server answers with a 32-bit status once everything is on disk.
Each command is one struct page_server_iov: u32 cmd, 4 bytes of padding,
u64 nr_pages, u64 vaddr, u64 dst_id; dst_id is the image id shifted left
by 8 with the pagemap's type (1 a process, 2 shared memory) in the low byte.

The server writes what it receives into its own images dir as a local dump
would (pagemap-ID.img or pagemap-shmem-ID.img with its pages file), so
criu's page-server and hiber's are interchangeable on either side.
"""

import logging
import os
import socket
import struct

from ..errors import HiberError
from ..images.pagemap import PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT

log = logging.getLogger(__name__)

PSI = struct.Struct("<I4xQQQ")
PS_IOV_ADD, PS_IOV_HOLE, PS_IOV_OPEN, PS_IOV_OPEN2, PS_IOV_PARENT, PS_IOV_ADD_F = 1, 2, 3, 4, 5, 6
PS_IOV_GET = 7
PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE = 0x1023, 0x1024
PS_CMD_BITS = 16
PS_TYPE_PID, PS_TYPE_SHMEM = 1, 2
# older CRIUs put their CR_FD_* numbers in the type byte (decode_pm)
LEGACY_PID_TYPES = {10, 11, 16, 17}
LEGACY_SHMEM_TYPES = {27, 28, 29, 32, 33, 34}


class PageServerError(HiberError):
    pass


def encode_dst(key, shmem):
    return key << 8 | (PS_TYPE_SHMEM if shmem else PS_TYPE_PID)


def decode_dst(dst_id):
    """(image id, shmem?) of a dst_id; PageServerError for an unknown type."""
    kind = dst_id & 0xff
    if kind == PS_TYPE_PID or kind in LEGACY_PID_TYPES:
        return dst_id >> 8, False
    if kind == PS_TYPE_SHMEM or kind in LEGACY_SHMEM_TYPES:
        return dst_id >> 8, True
    raise PageServerError(f"the page server was sent an unknown pagemap type {kind}")


def _recv_exactly(sock, size):
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None if got == 0 else bytes(buf[:got])
        got += n
    return buf


# ---- the dumping side ------------------------------------------------------------

class PageServerClient:
    """A dump's connection to a page server (criu dump --page-server)."""

    def __init__(self, address, port):
        try:
            self.sock = socket.create_connection((address or "localhost", port), timeout=60)
        except OSError as e:
            raise PageServerError(f"cannot reach the page server at {address}:{port}: "
                                  f"{e.strerror or e}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, cmd, nr_pages=0, vaddr=0, dst_id=0):
        self.sock.sendall(PSI.pack(cmd, nr_pages, vaddr, dst_id))

    def pagemap_writer(self, key, shmem=False):
        return RemotePagemapWriter(self, encode_dst(key, shmem))

    def finish(self):
        """CLOSE, and the server's word that everything is written."""
        try:
            self.send(PS_IOV_CLOSE)
            answer = _recv_exactly(self.sock, 4)
        except OSError as e:
            raise PageServerError(f"the page server went away: {e.strerror or e}") from None
        if answer is None or len(answer) != 4:
            raise PageServerError("the page server closed the connection before confirming "
                                  "the pages")
        status = struct.unpack("<i", answer)[0]
        if status:
            raise PageServerError(f"the page server failed to write the pages ({status})")
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class RemotePagemapWriter:
    """PagemapWriter's interface (add, pages_written), over the wire."""

    def __init__(self, client, dst_id):
        self.client, self.dst_id = client, dst_id
        self.pages_written = 0
        client.send(PS_IOV_OPEN2, dst_id=dst_id)
        answer = _recv_exactly(client.sock, 1)
        if answer is None:
            raise PageServerError("the page server closed the connection")
        self.server_has_parent = bool(answer[0])

    def add(self, vaddr, nr_pages, flags, data=None):
        self.client.send(flags << PS_CMD_BITS | PS_IOV_ADD_F, nr_pages, vaddr, self.dst_id)
        if flags & PE_PRESENT:
            if data is None or len(data) != nr_pages * PAGE_SIZE:
                raise ValueError("present pages need exactly nr_pages x 4096 bytes of data")
            self.client.sock.sendall(data)
            self.pages_written += nr_pages

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- the receiving side ----------------------------------------------------------

def listen(address, port):
    sock = socket.socket(socket.AF_INET6 if address and ":" in address else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address or "0.0.0.0", port))
    except OSError as e:
        sock.close()
        raise PageServerError(f"the page server cannot listen on {address or '*'}:{port}: "
                              f"{e.strerror}") from None
    sock.listen(1)
    return sock


def serve(listener, images):
    """Accept one dump and write its pages into ``images`` (an ImageDir);
    returns the number of pages written."""
    conn, peer = listener.accept()
    listener.close()
    log.info("Page server: connection from %s", peer[0])
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        return _serve_connection(conn, images)


def _serve_connection(conn, images):
    writer = None
    # above the ids a dump writing into the same dir gives its own pages
    # files (criu's up_page_ids_base)
    next_pages_id = 0x10001
    written = 0
    try:
        while True:
            raw = _recv_exactly(conn, PSI.size)
            if raw is None:
                raise PageServerError("the dump closed the connection without CLOSE: the "
                                      "images are incomplete")
            if len(raw) != PSI.size:
                raise PageServerError("the dump sent a truncated command")
            cmd, nr_pages, vaddr, dst_id = PSI.unpack(raw)
            op, flags = cmd & 0xffff, cmd >> PS_CMD_BITS
            if op in (PS_IOV_OPEN, PS_IOV_OPEN2):
                if writer is not None:
                    written += writer.pages_written
                    writer.close()
                key, shmem = decode_dst(dst_id)
                writer = images.pagemap_writer(key, next_pages_id, shmem=shmem)
                next_pages_id += 1
                if op == PS_IOV_OPEN2:
                    conn.sendall(bytes([_parent_has(images, key, shmem)]))
            elif op == PS_IOV_PARENT:
                key, shmem = decode_dst(dst_id)
                conn.sendall(struct.pack("<i", _parent_has(images, key, shmem)))
            elif op in (PS_IOV_ADD_F, PS_IOV_ADD, PS_IOV_HOLE):
                if op == PS_IOV_ADD:
                    flags = PE_PRESENT
                elif op == PS_IOV_HOLE:
                    flags = PE_PARENT
                if writer is None:
                    raise PageServerError("the dump sent pages before naming their pagemap")
                data = None
                if flags & PE_PRESENT:
                    data = _recv_exactly(conn, nr_pages * PAGE_SIZE)
                    if data is None or len(data) != nr_pages * PAGE_SIZE:
                        raise PageServerError("the dump closed the connection in the middle "
                                              "of a run of pages")
                writer.add(vaddr, nr_pages, flags, data)
            elif op in (PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE):
                if writer is not None:
                    written += writer.pages_written
                    writer.close()
                    writer = None
                conn.sendall(struct.pack("<i", 0))
                return written
            else:
                raise PageServerError(f"the dump sent an unknown command 0x{cmd:x}")
    finally:
        if writer is not None:
            writer.close()


def _parent_has(images, key, shmem):
    name = f"pagemap-shmem-{key}.img" if shmem else f"pagemap-{key}.img"
    return int(os.path.exists(os.path.join(images.path, "parent", name)))


def run(images, address, port, *, daemon=False, status_fd=None, pidfile=None):
    """criu page-server: listen, tell ``status_fd`` (a zero byte) once ready,
    receive one dump's pages into ``images`` (an ImageDir), then exit.
    With ``daemon`` the serving goes on in a detached child whose PID goes
    to ``pidfile``; this returns at once. Returns the pages written (None
    in the parent of a daemon)."""
    listener = listen(address, port)
    if daemon:
        child = os.fork()
        if child:
            listener.close()
            if pidfile:
                with open(pidfile, "w") as f:
                    f.write(f"{child}\n")
            return None
        os.setsid()
        try:
            _announce(status_fd)
            serve(listener, images)
            os._exit(0)
        except BaseException as e:  # the daemon's end has no caller to tell
            log.error("Page server failed: %s", e)
            os._exit(1)
    _announce(status_fd)
    return serve(listener, images)


def _announce(status_fd):
    if status_fd is not None:
        os.write(status_fd, b"\0")
        os.close(status_fd)


# ---- lazy migration: the dump serves the pages it kept back ------------------------

class LazyStore:
    """The lazy pages of a dump with --lazy-pages, kept in memory (a memfd)
    once the tree is gone, until the restoring side has fetched them."""

    def __init__(self):
        self.fd = os.memfd_create("hiber-lazy-pages", os.MFD_CLOEXEC)
        self.size = 0
        self.index = {}  # pid -> [(vaddr, end, offset)] ascending

    def put(self, pid, vaddr, data):
        os.pwrite(self.fd, data, self.size)
        self.index.setdefault(pid, []).append((vaddr, vaddr + len(data), self.size))
        self.size += len(data)

    def read(self, pid, vaddr, nr_pages):
        """The kept bytes of [vaddr, vaddr + nr_pages pages), or None when the
        dump kept no such pages."""
        end = vaddr + nr_pages * PAGE_SIZE
        out = bytearray()
        position = vaddr
        for start, stop, offset in self.index.get(pid, ()):
            if stop <= position or start >= end:
                continue
            if start > position:
                return None
            take = min(stop, end) - position
            out += os.pread(self.fd, take, offset + position - start)
            position += take
            if position == end:
                return bytes(out)
        return None

    def close(self):
        os.close(self.fd)


class LazyDumpWriter:
    """A pagemap writer for a dump with --lazy-pages: lazy pages go to the
    store and into the pagemap as PE_LAZY entries without data (as criu
    writes them), the others as usual."""

    def __init__(self, inner, store, pid):
        self.inner, self.store, self.pid = inner, store, pid
        self.pages_kept = 0

    @property
    def pages_written(self):
        return self.inner.pages_written

    def add(self, vaddr, nr_pages, flags, data=None):
        if flags & PE_LAZY and flags & PE_PRESENT:
            self.store.put(self.pid, vaddr, bytes(data))
            self.inner.add(vaddr, nr_pages, PE_LAZY)
            self.pages_kept += nr_pages
        else:
            self.inner.add(vaddr, nr_pages, flags, data)

    def close(self):
        self.inner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve_lazy(listener, store):
    """Answer one lazy-pages daemon's GETs from ``store`` until it closes."""
    conn, peer = listener.accept()
    listener.close()
    log.info("Lazy pages: the restoring side connected from %s", peer[0])
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    served = 0
    with conn:
        while True:
            raw = _recv_exactly(conn, PSI.size)
            if raw is None or len(raw) != PSI.size:
                raise PageServerError("the lazy-pages daemon went away before fetching "
                                      "every page")
            cmd, nr_pages, vaddr, pid = PSI.unpack(raw)
            op = cmd & 0xffff
            if op in (PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE):
                conn.sendall(struct.pack("<i", 0))
                return served
            if op != PS_IOV_GET:
                raise PageServerError(f"the lazy-pages daemon sent command 0x{cmd:x}")
            data = store.read(pid, vaddr, nr_pages)
            if data is None:
                raise PageServerError(f"the lazy-pages daemon asked for pages of PID {pid} at "
                                      f"0x{vaddr:x} this dump did not keep")
            conn.sendall(PSI.pack(PE_PRESENT << PS_CMD_BITS | PS_IOV_ADD_F, nr_pages, vaddr,
                                  pid) + data)
            served += nr_pages


class LazySource:
    """The lazy-pages daemon's side: fetch kept pages from a dump."""

    def __init__(self, address, port):
        self.client = PageServerClient(address, port)

    def fetch(self, pid, vaddr, view):
        """Fill ``view`` with the pages of PID at vaddr."""
        nr_pages = len(view) // PAGE_SIZE
        self.client.send(PS_IOV_GET, nr_pages, vaddr, pid)
        raw = _recv_exactly(self.client.sock, PSI.size)
        if raw is None or len(raw) != PSI.size:
            raise PageServerError("the dump serving the lazy pages went away")
        _, got_pages, got_vaddr, _ = PSI.unpack(raw)
        if (got_pages, got_vaddr) != (nr_pages, vaddr):
            raise PageServerError(f"asked the dump for 0x{vaddr:x}+{nr_pages} pages, got "
                                  f"0x{got_vaddr:x}+{got_pages}")
        done = 0
        while done < len(view):
            n = self.client.sock.recv_into(view[done:], len(view) - done)
            if n == 0:
                raise PageServerError("the dump serving the lazy pages went away")
            done += n

    def finish(self):
        self.client.finish()
