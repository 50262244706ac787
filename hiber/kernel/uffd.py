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
