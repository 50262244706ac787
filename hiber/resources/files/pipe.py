"""Pipes: a PIPE entry for each open end (pipe_entry: the pipe's inode,
flags, owner), and the data queued in each pipe in pipes-data.img (spec
§2.16). Both ends of one pipe in a tree come back as one pipe, with its
data and its capacity."""

import errno
import fcntl
import os

from ...images.messages import classes
from ...kernel.sys import SPLICE_F_NONBLOCK, tee, write_all
from .common import O_ACCMODE, O_CLOEXEC, O_DIRECT, high_dup, set_status_flags
from .table import FD_TYPES, Kind, nothing_to_check

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032


# ---- the data queued in a pipe (FIFOs queue theirs alike) --------------------

def peek_pipe(fd_path):
    """(queued bytes, capacity) of a pipe, without consuming the data.

    Opening /proc/PID/fd/N of a pipe read-only gives a new read end of the
    same pipe whichever end N is; tee() copies the queued data into a pipe
    of ours without taking it out of the original (spec §2.16).
    """
    src = os.open(fd_path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        size = fcntl.fcntl(src, F_GETPIPE_SZ)
        r, w = os.pipe2(os.O_NONBLOCK)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, size)
            chunks = []
            try:
                n = tee(src, w, size, SPLICE_F_NONBLOCK)
            except OSError as e:
                if e.errno != errno.EAGAIN:  # EAGAIN: the pipe is empty
                    raise
                n = 0
            while n > 0:
                chunk = os.read(r, n)
                chunks.append(chunk)
                n -= len(chunk)
            return b"".join(chunks), size
        finally:
            os.close(r)
            os.close(w)
    finally:
        os.close(src)


class QueuedData:
    """The dump's data queued in pipes (or FIFOs), one copy per pipe inode,
    for one image: pipes-data.img or fifo-data.img."""

    def __init__(self, type_name):
        self.type_name = type_name
        self.by_inode = {}  # pipe inode -> (bytes, capacity)

    def take(self, inode, fd_path):
        if inode not in self.by_inode:
            self.by_inode[inode] = peek_pipe(fd_path)

    def write_images(self, images):
        # global images exist only when they have entries (spec §1.7)
        if self.by_inode:
            images.write(self.type_name, None, [
                (classes["pipe_data_entry"](pipe_id=inode, bytes=len(data), size=size), data)
                for inode, (data, size) in self.by_inode.items()])


def read_queued(images, type_name):
    """pipe inode -> (bytes, capacity) from pipes-data.img or fifo-data.img."""
    if not images.exists(type_name):
        return {}
    return {e.message.pipe_id: (e.extra or b"", e.message.size)
            for e in images.read_entries(type_name)}


def fill_pipe(write_fd, data, size):
    if size:
        try:
            fcntl.fcntl(write_fd, F_SETPIPE_SZ, size)
        except OSError:
            pass  # a smaller pipe still holds what a default one holds
    if data:
        write_all(write_fd, data)


# ---- the kind ------------------------------------------------------------------

def is_pipe(fd):
    return fd.link.startswith("pipe:")


def dump_fd(table, fd):
    entry = classes["pipe_entry"](id=0, pipe_id=fd.info.st_ino,
                                  flags=fd.flags & ~(O_CLOEXEC | O_DIRECT), fown=fd.owner())
    file_id = table.add(KIND, entry)
    table.state(KIND, lambda: QueuedData("PIPES_DATA")).take(fd.info.st_ino, fd.path)
    return file_id


def open_end(stub, entry):
    """One end of the pipe, made (with its data) the first time either end
    is asked for. An end asked for again, by another open file of the
    process, is a new open file of the same pipe."""
    pipes = stub.state(KIND, dict)  # pipe inode -> [read fd, write fd, ends handed out]
    pipe = pipes.get(entry.pipe_id)
    if pipe is None:
        r, w = os.pipe()
        r = stub.temporary(high_dup(r, stub.floor))
        w = stub.temporary(high_dup(w, stub.floor))
        data, size = stub.files.data(KIND).get(entry.pipe_id, (b"", 0))
        fill_pipe(w, data, size)
        pipe = pipes[entry.pipe_id] = [r, w, set()]
    write_end = entry.flags & O_ACCMODE == os.O_WRONLY
    if write_end in pipe[2]:
        # /proc/self/fd/N of either end opens the pipe anew, in the mode asked
        fd = high_dup(os.open(f"/proc/self/fd/{pipe[0]}",
                              os.O_WRONLY if write_end else os.O_RDONLY), stub.floor)
    else:
        fd = pipe[1] if write_end else pipe[0]
        pipe[2].add(write_end)
    set_status_flags(fd, entry.flags)
    return fd


def label(entry):
    end = "write end" if entry.pipe.flags & O_ACCMODE else "read end"
    return f"pipe:[{entry.pipe.pipe_id}] ({end})"


KIND = Kind(name="pipe", fd_type=FD_TYPES["PIPE"], entry_field="pipe",
            match=is_pipe, dump=dump_fd, check=nothing_to_check,
            open=lambda stub, entry: open_end(stub, entry.pipe), label=label,
            read_images=lambda images: read_queued(images, "PIPES_DATA"))
