"""Fork this Python process into a child with a chosen PID (clone3 + set_tid).

os.fork() cannot choose the PID. clone3 can (kernel-facts: ~1.2 ms, EEXIST
when the PID is taken). Called raw it would skip the interpreter's fork
handling, so we do what os.fork() does around it: PyOS_BeforeFork, then
PyOS_AfterFork_Parent / PyOS_AfterFork_Child. The syscall goes through a
PyDLL handle so the GIL stays held across it: the child starts with an
interpreter state that is consistent, like after os.fork().
"""

import ctypes
import os
import signal

from .sys import NR

_pylibc = ctypes.PyDLL(None, use_errno=True)
_raw_syscall = _pylibc.syscall
_raw_syscall.restype = ctypes.c_long


class clone_args(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


def fork_with_pid(pid, flags=0):
    """Fork; the child gets ``pid``. Returns 0 in the child, pid in the parent.

    Raises OSError (EEXIST: the PID is in use; EINVAL: above pid_max).
    """
    tids = (ctypes.c_int32 * 1)(pid)
    args = clone_args(flags=flags, exit_signal=signal.SIGCHLD,
                      set_tid=ctypes.addressof(tids), set_tid_size=1)
    ctypes.pythonapi.PyOS_BeforeFork()
    ret = _raw_syscall(ctypes.c_long(NR["clone3"]), ctypes.byref(args),
                       ctypes.c_size_t(ctypes.sizeof(args)))
    if ret == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    errno_value = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if ret < 0:
        raise OSError(errno_value, f"clone3 with PID {pid}: {os.strerror(errno_value)}")
    return ret
