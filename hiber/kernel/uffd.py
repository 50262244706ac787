"""userfaultfd write-protection, as the dirty-page tracker uses it
(Documentation/admin-guide/mm/userfaultfd.rst, include/uapi/linux/userfaultfd.h).

With UFFD_FEATURE_WP_ASYNC the kernel resolves a write to a protected page
by itself: no fault reaches the fd's reader, the page just loses its
uffd-wp bit, and PAGEMAP_SCAN then reports it as PAGE_IS_WRITTEN. That is
soft-dirty tracking for kernels built without MEM_SOFT_DIRTY (kernel-facts).

The ioctls act on the mm the fd was created in, whoever calls them: the fd
is made inside the tracked process (an injected userfaultfd()), taken out
with pidfd_getfd, and driven from here.
"""

import ctypes
import errno
import fcntl
import os

UFFD_API = 0xAA
# _IOWR(0xAA, nr, size): 3 << 30 | size << 16 | 0xAA << 8 | nr
UFFDIO_API = 0xC018AA3F            # struct uffdio_api, 24 bytes
UFFDIO_REGISTER = 0xC020AA00       # struct uffdio_register, 32 bytes
UFFDIO_WRITEPROTECT = 0xC018AA06   # struct uffdio_writeprotect, 24 bytes

UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0


class uffdio_api(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


class uffdio_range(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class uffdio_register(ctypes.Structure):
    _fields_ = [("range", uffdio_range), ("mode", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


class uffdio_writeprotect(ctypes.Structure):
    _fields_ = [("range", uffdio_range), ("mode", ctypes.c_uint64)]


def enable_async_wp(fd):
    """UFFDIO_API with WP_ASYNC: the one handshake an fd takes (a second
    UFFDIO_API on the same fd fails with EINVAL). Raises OSError when the
    kernel lacks the feature."""
    api = uffdio_api(api=UFFD_API, features=UFFD_FEATURE_WP_ASYNC)
    fcntl.ioctl(fd, UFFDIO_API, api)
    if not api.features & UFFD_FEATURE_WP_ASYNC:
        raise OSError(errno.EOPNOTSUPP, "userfaultfd has no asynchronous write-protection")


def register_wp(fd, start, length):
    """Register [start, start+length) of the fd's mm for write-protection.
    Registering a range again with the same fd is allowed; a range another
    userfaultfd holds fails with EBUSY."""
    fcntl.ioctl(fd, UFFDIO_REGISTER,
                uffdio_register(range=uffdio_range(start, length), mode=UFFDIO_REGISTER_MODE_WP))


def write_protect(fd, start, length):
    """Protect every populated page of the range: the next write to each one
    shows in PAGEMAP_SCAN's PAGE_IS_WRITTEN. Pages not populated now are not
    marked (no WP_UNPOPULATED: it would fill page tables for whole sparse
    areas), and a page populated later is born written."""
    fcntl.ioctl(fd, UFFDIO_WRITEPROTECT,
                uffdio_writeprotect(range=uffdio_range(start, length),
                                    mode=UFFDIO_WRITEPROTECT_MODE_WP))


def async_wp_works():
    """Whether this kernel offers asynchronous write-protection (a fd of our
    own, handshaken and closed)."""
    from .sys import syscall
    try:
        fd = syscall("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        enable_async_wp(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# ---- missing-page mode, for lazy restore ------------------------------------------

UFFDIO_COPY = 0xC028AA03           # struct uffdio_copy, 40 bytes
UFFDIO_REGISTER_MODE_MISSING = 1 << 0
# non-cooperative events: the tracked process forks, moves, drops or unmaps
# memory; each is reported (and waits) until the fd's reader has read it
UFFD_FEATURE_EVENT_FORK = 1 << 1
UFFD_FEATURE_EVENT_REMAP = 1 << 2
UFFD_FEATURE_EVENT_REMOVE = 1 << 3
UFFD_FEATURE_EVENT_UNMAP = 1 << 6
NON_COOPERATIVE = (UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP
                   | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP)

UFFD_EVENT_PAGEFAULT = 0x12
UFFD_EVENT_FORK = 0x13
UFFD_EVENT_REMAP = 0x14
UFFD_EVENT_REMOVE = 0x15
UFFD_EVENT_UNMAP = 0x16
MSG_SIZE = 32  # struct uffd_msg


class uffdio_copy(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_uint64), ("src", ctypes.c_uint64), ("len", ctypes.c_uint64),
                ("mode", ctypes.c_uint64), ("copy", ctypes.c_int64)]


def enable_missing(fd):
    """UFFDIO_API with the non-cooperative events: a lazily restored
    process that forks, mremaps, or drops memory must tell the server."""
    api = uffdio_api(api=UFFD_API, features=NON_COOPERATIVE)
    fcntl.ioctl(fd, UFFDIO_API, api)


def register_missing(fd, start, length):
    fcntl.ioctl(fd, UFFDIO_REGISTER,
                uffdio_register(range=uffdio_range(start, length),
                                mode=UFFDIO_REGISTER_MODE_MISSING))


def copy(fd, dst, src_address, length):
    """UFFDIO_COPY: fill [dst, dst+length) of the fd's mm from our memory at
    ``src_address`` and wake the threads waiting there. Returns the bytes
    copied; raises OSError (EEXIST: a page is there already, EAGAIN: the
    layout is changing, ESRCH/ENOENT: the process is gone)."""
    arg = uffdio_copy(dst=dst, src=src_address, len=length, mode=0, copy=0)
    try:
        fcntl.ioctl(fd, UFFDIO_COPY, arg)
    except OSError:
        if arg.copy > 0:
            return arg.copy
        raise
    return arg.copy


def parse_message(raw):
    """(event, a, b, c) of a struct uffd_msg: for a page fault (flags,
    address, 0); fork (new fd, 0, 0); remap (from, to, length); remove and
    unmap (start, end, 0)."""
    event = raw[0]
    if event == UFFD_EVENT_FORK:
        return event, int.from_bytes(raw[8:12], "little"), 0, 0
    a, b, c = (int.from_bytes(raw[i:i + 8], "little") for i in (8, 16, 24))
    return event, a, b, c
