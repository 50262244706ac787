"""AIO contexts (io_setup(2)): each is a ring mapped into the process,
"/[aio] (deleted)" in its maps, as CRIU 4.2 keeps them: the VMA
(VMA_AREA_AIORING) with all its pages, and an aio_ring_entry in the mm
(its address, length and the request count that makes a ring that long).

Restore, as criu's: the ring's pages are first filled into a private area
at its address; then a new context is made with that request count, the
kernel's completion position (the ring's tail) is moved on by as many
no-op writes to /dev/null as the dumped ring had seen, its head set, the
completed events copied in, and the new ring moved (mremap, which the
kernel allows for AIO rings since 3.19: aio_remap) over the private area.
Requests still in flight at the dump are not kept, as with criu."""

import struct

from ..errors import HiberError
from ..images import vma as V
from ..images.messages import classes as C
from ..kernel import sys

sys.NR.update(io_setup=206, io_destroy=207, io_submit=209)

RING_HEADER = struct.Struct("=8I")   # id, nr, head, tail, magic, compat, incompat, header_length
EVENT_SIZE = 32                      # struct io_event
IOCB = struct.Struct("=QIIHhIQQqQII")  # struct iocb, 64 bytes
IOCB_CMD_PWRITE = 1
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
O_WRONLY = 1
AT_FDCWD = -100


class AioError(HiberError):
    pass


def is_ring(path):
    return path.startswith("/[aio]")


def requests_for(ring_len):
    """The io_setup() count that gives a ring this long: the kernel makes
    max(n, 4 * CPUs) * 2 + 2 requests, rounded up to whole pages of events
    (fs/aio.c, aio_setup_ring); this undoes it, as criu does."""
    events = (ring_len - RING_HEADER.size) // EVENT_SIZE
    return (events - 2) // 2


def ring_entries(vmas):
    return [C["aio_ring_entry"](id=v.start, ring_len=v.end - v.start,
                                nr_req=requests_for(v.end - v.start))
            for v in vmas if v.status & V.VMA_AREA_AIORING]


def restore_rings(task, scratch, scratch_size, aios):
    """In the rebuilt task, each ring's private copy becomes a live context."""
    for ring in aios:
        _restore_ring(task, scratch, scratch_size, ring)


def _restore_ring(task, scratch, scratch_size, ring):
    where = f"PID {task.pid}: AIO ring at 0x{ring.id:x}"
    _, nr, head, tail = RING_HEADER.unpack(task.read(ring.id, RING_HEADER.size))[:4]
    task.write(scratch, bytes(8))
    task.syscall("io_setup", ring.nr_req, scratch)
    ctx = struct.unpack("<Q", task.read(scratch, 8))[0]
    new_nr = RING_HEADER.unpack(task.read(ctx, RING_HEADER.size))[1]
    if new_nr != nr or head >= nr or tail >= nr:
        raise AioError(f"{where}: a new context has {new_nr} events where the dumped one had "
                       f"{nr} (head {head}, tail {tail})")
    if head or tail:
        _move_tail(task, scratch, scratch_size, ctx, nr, head, tail, where)
    events = task.read(ring.id + RING_HEADER.size, ring.ring_len - RING_HEADER.size)
    task.write(ctx + RING_HEADER.size, events)
    got = task.syscall("mremap", ctx, ring.ring_len, ring.ring_len,
                       MREMAP_MAYMOVE | MREMAP_FIXED, ring.id)
    if got != ring.id:
        raise AioError(f"{where}: the new ring could not be moved there (0x{got:x})")


def _move_tail(task, scratch, scratch_size, ctx, nr, head, tail, where):
    """As many completed no-op writes as it takes the kernel's tail where the
    dumped one was: a full turn first when the tail had wrapped before head."""
    count = nr + tail if tail < head else tail
    batch = min(count, nr - 1, (scratch_size - 256) // 8)
    path, iocb, byte, pointers = scratch, scratch + 16, scratch + 80, scratch + 128
    task.write(path, b"/dev/null\0")
    fd = task.syscall("openat", AT_FDCWD, path, O_WRONLY, 0)
    try:
        task.write(iocb, IOCB.pack(0, 0, 0, IOCB_CMD_PWRITE, 0, fd, byte, 1, 0, 0, 0, 0))
        task.write(pointers, struct.pack(f"<{batch}Q", *([iocb] * batch)))
        done = 0
        while done < count:
            n = task.syscall("io_submit", ctx, min(batch, count - done), pointers)
            if n <= 0:
                raise AioError(f"{where}: io_submit gave {n}")
            done += n
            # reading the events is what moves the head: setting it does the same
            task.write(ctx + 8, struct.pack("<I", min(done, head)))
    finally:
        task.syscall("close", fd)

