"""Named pipes (FIFOs): a REG entry for the path, a FIFO entry pointing to
it (fifo_entry: pipe inode, regf_id), and the data queued in the FIFO in
fifo-data.img, as CRIU writes them."""

import os
import stat as st

from ...images.messages import classes
from . import ghost, regular
from .common import O_ACCMODE, O_CLOEXEC, high_dup, set_status_flags
from .pipe import QueuedData, fill_pipe, read_queued
from .table import FD_TYPES, Kind


def is_fifo(fd):
    return st.S_ISFIFO(fd.info.st_mode)


def dump_fd(table, fd):
    # a FIFO deleted since it was opened comes back as a ghost (ghost.py)
    regf_id = regular.add_entry(table, ghost.stripped(fd.link), fd.info, fd.flags & ~O_CLOEXEC,
                                0, fd.owner(), size_check=False)
    regular.remap_if_gone(table, regf_id, fd.path, fd.link, fd.info)
    file_id = table.add(KIND, classes["fifo_entry"](id=0, pipe_id=fd.info.st_ino,
                                                    regf_id=regf_id))
    table.state(KIND, lambda: QueuedData("FIFO_DATA")).take(fd.info.st_ino, fd.path)
    return file_id


def check(files, entry):
    if entry.fifo.regf_id not in files.data(regular.KIND):  # else: a ghost, made first
        regular.check_file(files.entry(entry.fifo.regf_id).reg)


def open_end(stub, entry):
    """An open file of the FIFO, in its dumped mode. The first one also
    opens it read-write: that open never blocks, and it keeps the FIFO's
    buffer (filled with the dumped data) alive until the fds are in place."""
    reg = stub.files.entry(entry.fifo.regf_id).reg
    keepers = stub.state(KIND, dict)  # pipe inode -> read-write fd
    if entry.fifo.pipe_id not in keepers:
        keeper = stub.temporary(high_dup(os.open(reg.name, os.O_RDWR | os.O_NONBLOCK),
                                         stub.floor))
        data, size = stub.files.data(KIND).get(entry.fifo.pipe_id, (b"", 0))
        fill_pipe(keeper, data, size)
        keepers[entry.fifo.pipe_id] = keeper
    flags = reg.flags & ~O_CLOEXEC
    fd = high_dup(os.open(reg.name, (flags & O_ACCMODE) | os.O_NONBLOCK), stub.floor)
    set_status_flags(fd, flags)
    return fd


KIND = Kind(name="FIFO", fd_type=FD_TYPES["FIFO"], entry_field="fifo",
            match=is_fifo, dump=dump_fd, check=check, open=open_end,
            label=lambda entry: f"fifo:[{entry.fifo.pipe_id}]",
            read_images=lambda images: read_queued(images, "FIFO_DATA"))
