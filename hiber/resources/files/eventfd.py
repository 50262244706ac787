"""Event fds (eventfd(2)): a 64-bit counter, and whether reads take one
(EFD_SEMAPHORE) or all of it. CRIU's eventfd_file_entry holds the counter,
the open flags and the owner; the semaphore mode, which CRIU 4.2 drops, is
kept in a field of hiber's own. Both come from fdinfo (eventfd-count,
eventfd-semaphore, fs/eventfd.c); restore makes a new eventfd with them.
"""

import os

from ...images.messages import classes
from .common import O_CLOEXEC, UnsupportedFile, high_dup, set_status_flags
from .table import FD_TYPES, Kind, nothing_to_check


def is_eventfd(fd):
    return fd.link == "anon_inode:[eventfd]"


def dump_fd(table, fd):
    if "eventfd-semaphore" not in fd.fdinfo:
        # kernels before 6.6 do not say, and a wrong guess changes what reads return
        raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is an eventfd, and this kernel does "
                              "not tell whether it counts as a semaphore (fdinfo has no "
                              "eventfd-semaphore line)")
    entry = classes["eventfd_file_entry"](id=0, flags=fd.flags & ~O_CLOEXEC, fown=fd.owner(),
                                          counter=int(fd.fdinfo["eventfd-count"], 16))
    entry.semaphore = fd.fdinfo["eventfd-semaphore"].strip() == "1"
    return table.add(KIND, entry)


def open_entry(stub, entry):
    efd = entry.efd
    # eventfd() takes a 32-bit start value; the counter goes to 2^64 - 2
    fd = os.eventfd(0, os.EFD_SEMAPHORE if efd.semaphore else 0)
    if efd.counter:
        os.eventfd_write(fd, efd.counter)
    set_status_flags(fd, efd.flags)
    return high_dup(fd, stub.floor)


def label(entry):
    mode = ", semaphore" if entry.efd.semaphore else ""
    return f"eventfd (count {entry.efd.counter}{mode})"


KIND = Kind(name="eventfd", fd_type=FD_TYPES["EVENTFD"], entry_field="efd",
            match=is_eventfd, dump=dump_fd, check=nothing_to_check, open=open_entry,
            label=label)
