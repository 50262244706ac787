"""ctypes access to the syscalls hiber needs that Python's os module lacks.

Every wrapper raises OSError with the errno on failure, never returns -1.
"""

import ctypes
import mmap
import os

libc = ctypes.CDLL(None, use_errno=True)

_syscall = libc.syscall
_syscall.restype = ctypes.c_long

# x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl)
NR = {
    "read": 0, "write": 1, "open": 2, "close": 3, "lseek": 8, "mmap": 9, "mprotect": 10,
    "munmap": 11, "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14, "ioctl": 16,
    "pread64": 17, "pwrite64": 18, "madvise": 28, "dup2": 33, "pause": 34, "nanosleep": 35,
    "getitimer": 36, "setitimer": 38, "getpid": 39, "clone": 56, "fork": 57, "exit": 60,
    "wait4": 61, "kill": 62, "fcntl": 72, "fchdir": 81, "umask": 95, "getrlimit": 97,
    "ptrace": 101, "setuid": 105, "setgid": 106, "setpgid": 109, "getppid": 110,
    "setsid": 112, "setreuid": 113, "setregid": 114, "setgroups": 116, "setresuid": 117,
    "setresgid": 119, "setfsuid": 122, "setfsgid": 123, "capset": 126,
    "rt_sigpending": 127, "rt_sigtimedwait": 128, "rt_sigqueueinfo": 129, "sigaltstack": 131, "personality": 135,
    "prctl": 157, "arch_prctl": 158, "setrlimit": 160, "chroot": 161, "gettid": 186,
    "futex": 202, "set_tid_address": 218, "restart_syscall": 219, "timer_create": 222,
    "timer_settime": 223, "timer_gettime": 224, "timer_getoverrun": 225,
    "timer_delete": 226, "exit_group": 231, "tgkill": 234, "mremap": 25, "openat": 257,
    "set_robust_list": 273, "get_robust_list": 274, "tee": 276, "splice": 275,
    "vmsplice": 278, "pipe2": 293, "preadv": 295, "pwritev": 296, "rt_tgsigqueueinfo": 297, "prlimit64": 302,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "memfd_create": 319,
    "userfaultfd": 323, "rseq": 334, "pidfd_send_signal": 424, "pidfd_open": 434,
    "clone3": 435, "close_range": 436, "pidfd_getfd": 438, "map_shadow_stack": 453,
    "mlockall": 151, "seccomp": 317, "membarrier": 324, "mlock2": 325, "mseal": 462,
    "timerfd_create": 283, "timerfd_settime": 286, "signalfd4": 289,
    "epoll_ctl": 233, "epoll_create1": 291,
}


def _errcheck(ret):
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def syscall(name, *args):
    """Run a syscall in this process; args are ints or ctypes objects."""
    converted = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return _errcheck(_syscall(ctypes.c_long(NR[name]), *converted))


class iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


IOV_MAX = 1024


def address_of(buffer):
    """Address of a writable buffer (bytearray, ctypes array, mmap)."""
    if isinstance(buffer, ctypes.Array):
        return ctypes.addressof(buffer)
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def process_vm_readv(pid, local, remote):
    """local, remote: lists of (address, length). Returns bytes transferred.

    A partial read returns a short count (spec: the first page it cannot
    read ends the transfer); EFAULT comes only when nothing could be read.
    """
    lv = (iovec * len(local))(*[iovec(a, n) for a, n in local])
    rv = (iovec * len(remote))(*[iovec(a, n) for a, n in remote])
    return syscall("process_vm_readv", pid, lv, len(local), rv, len(remote), 0)


def process_vm_writev(pid, local, remote):
    lv = (iovec * len(local))(*[iovec(a, n) for a, n in local])
    rv = (iovec * len(remote))(*[iovec(a, n) for a, n in remote])
    return syscall("process_vm_writev", pid, lv, len(local), rv, len(remote), 0)


def pidfd_open(pid):
    return syscall("pidfd_open", pid, 0)


def pidfd_getfd(pidfd, target_fd):
    """Duplicate another process's fd into ours (needs ptrace access)."""
    return syscall("pidfd_getfd", pidfd, target_fd, 0)


KCMP_FILE, KCMP_VM, KCMP_FILES, KCMP_FS, KCMP_SIGHAND = 0, 1, 2, 3, 4


def kcmp(pid1, pid2, kind, idx1=0, idx2=0):
    """0 when the two objects are the same (ordering otherwise)."""
    return syscall("kcmp", pid1, pid2, kind, idx1, idx2)


KCMP_EPOLL_TFD = 7


class kcmp_epoll_slot(ctypes.Structure):
    _fields_ = [("efd", ctypes.c_uint32), ("tfd", ctypes.c_uint32), ("toff", ctypes.c_uint32)]


def is_epoll_target(pid, fd, epoll_pid, epfd, tfd, toff=0):
    """Whether fd of pid is the file registered in epoll epfd of epoll_pid
    as (tfd, toff): toff counts the registrations with the same fd number
    (kcmp(2), KCMP_EPOLL_TFD)."""
    slot = kcmp_epoll_slot(epfd, tfd, toff)
    try:
        return kcmp(pid, epoll_pid, KCMP_EPOLL_TFD, fd, ctypes.addressof(slot)) == 0
    except OSError:
        return False


def get_robust_list(tid):
    head = ctypes.c_ulong()
    length = ctypes.c_size_t()
    syscall("get_robust_list", tid, ctypes.byref(head), ctypes.byref(length))
    return head.value, length.value


def tee(fd_in, fd_out, length, flags=0):
    return syscall("tee", fd_in, fd_out, length, flags)


SPLICE_F_NONBLOCK = 2


def sched_getscheduler(pid):
    return _errcheck(libc.sched_getscheduler(pid))


class sched_param(ctypes.Structure):
    _fields_ = [("sched_priority", ctypes.c_int)]


def sched_getparam(pid):
    p = sched_param()
    _errcheck(libc.sched_getparam(pid, ctypes.byref(p)))
    return p.sched_priority


def write_all(fd, data):
    """os.write until every byte of data is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def signed(value, bits=64):
    """Register values come back unsigned; syscall results are signed."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


PR_SET_VMA, PR_SET_VMA_ANON_NAME = 0x53564D41, 0


def can_name_anonymous_mappings():
    """Whether this kernel names anonymous mappings (prctl PR_SET_VMA_ANON_NAME,
    CONFIG_ANON_VMA_NAME), tried on a page of our own."""
    area = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE)
    page = ctypes.c_char.from_buffer(area)
    try:
        name = ctypes.create_string_buffer(b"hiber-probe")
        return libc.prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME,
                          ctypes.c_ulong(ctypes.addressof(page)), ctypes.c_ulong(mmap.PAGESIZE),
                          ctypes.c_void_p(ctypes.addressof(name))) == 0
    finally:
        del page
        area.close()


TFD_IOC_SET_TICKS = 0x40085400  # _IOW('T', 0, u64): a timerfd's unread expirations


FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_fallocate = libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def punch_hole(fd, offset, length):
    """Free the blocks of [offset, offset+length) of a file, its size kept:
    the range then reads as zeros (fallocate(2) FALLOC_FL_PUNCH_HOLE)."""
    _errcheck(_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length))


CLONE_NEWCGROUP = 0x02000000


def setns(fd, nstype):
    """Join the namespace fd refers to (os.setns is Python 3.12's)."""
    return _errcheck(libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


def unshare(flags):
    return _errcheck(libc.unshare(ctypes.c_int(flags)))
