"""Signal fds (signalfd(2)): which signals a read takes. CRIU's
signalfd_entry holds the mask, the open flags and the owner; fdinfo gives
the mask (``sigmask:``, 64 bits in hex, fs/signalfd.c). The signals
themselves stay queued on the process, which restores them with its own.
"""

import ctypes
import struct

from ...images.messages import classes
from ...kernel.sys import syscall
from .common import O_CLOEXEC, high_dup, set_status_flags
from .table import FD_TYPES, Kind, nothing_to_check


def is_signalfd(fd):
    return fd.link == "anon_inode:[signalfd]"


def dump_fd(table, fd):
    return table.add(KIND, classes["signalfd_entry"](
        id=0, flags=fd.flags & ~O_CLOEXEC, fown=fd.owner(), sigmask=int(fd.fdinfo["sigmask"], 16)))


def open_entry(stub, entry):
    mask = ctypes.create_string_buffer(struct.pack("<Q", entry.sgfd.sigmask), 8)
    fd = syscall("signalfd4", -1, mask, 8, 0)
    set_status_flags(fd, entry.sgfd.flags)
    return high_dup(fd, stub.floor)


def signals_in_words(mask):
    return ",".join(str(sig) for sig in range(1, 65) if mask >> (sig - 1) & 1) or "none"


KIND = Kind(name="signalfd", fd_type=FD_TYPES["SIGNALFD"], entry_field="sgfd",
            match=is_signalfd, dump=dump_fd, check=nothing_to_check, open=open_entry,
            label=lambda entry: f"signalfd (signals {signals_in_words(entry.sgfd.sigmask)})")
