"""What every kind of open file shares: open-flag constants, borrowing a
frozen process's fd, and the stub's habit of keeping its temporary fds
above every fd of the tree."""

import fcntl
import os

from ...errors import HiberError
from ...kernel.sys import pidfd_getfd, pidfd_open

O_CLOEXEC = 0o2000000
O_DIRECT = 0o40000
O_ACCMODE = 3
O_APPEND = 0o2000
O_ASYNC = getattr(os, "O_ASYNC", 0o20000)
# the flags F_SETFL can change after open(2); the rest are fixed at open
O_STATUS_FLAGS = os.O_APPEND | os.O_NONBLOCK | os.O_DIRECT | os.O_NOATIME | O_ASYNC
F_DUPFD = 0


class UnsupportedFile(HiberError):
    """An fd or file entry of a kind hiber cannot dump or restore (yet)."""


class borrow_fd:
    """Duplicate a frozen process's fd into hiber for the time of a with block."""

    def __init__(self, pid, fd):
        self.pid, self.fd, self.ours = pid, fd, None

    def __enter__(self):
        pidfd = pidfd_open(self.pid)
        try:
            self.ours = pidfd_getfd(pidfd, self.fd)
        finally:
            os.close(pidfd)
        return self.ours

    def __exit__(self, *exc):
        os.close(self.ours)


# ---- restore: inside the stub ------------------------------------------------

def high_dup(fd, floor):
    """Move fd to the lowest free number >= floor; close the original."""
    new = fcntl.fcntl(fd, F_DUPFD, floor)
    os.close(fd)
    return new


def set_status_flags(fd, flags):
    """Give an open file the status flags (O_NONBLOCK, O_APPEND, ...) of ``flags``."""
    wanted = flags & O_STATUS_FLAGS
    current = fcntl.fcntl(fd, fcntl.F_GETFL)
    if current & O_STATUS_FLAGS != wanted:
        fcntl.fcntl(fd, fcntl.F_SETFL, (current & ~O_STATUS_FLAGS) | wanted)
