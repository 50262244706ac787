"""Timer fds (timerfd_create(2)): a clock, a remaining time and interval,
and the expirations not read yet. CRIU's timerfd_entry holds them with the
open flags and the owner, all read from fdinfo (fs/timerfd.c: clockid,
ticks, settime flags in octal, it_value as the time left, it_interval).

A restore arms the timer with the time that was left, as CRIU does: the
time the process spent checkpointed does not count. An absolute timer
(TFD_TIMER_ABSTIME) gets that remainder added to its clock's now. Ticks
not read yet come back through TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE).
"""

import ctypes
import fcntl
import re
import struct
import time

from ...errors import RestoreError
from ...images.messages import classes
from ...kernel.sys import TFD_IOC_SET_TICKS, syscall
from .common import O_CLOEXEC, UnsupportedFile, high_dup, set_status_flags
from .table import FD_TYPES, Kind, nothing_to_check

TFD_TIMER_ABSTIME = 1
NSEC = 1_000_000_000
PAIR = re.compile(r"\((-?\d+),\s*(-?\d+)\)")
ITIMERSPEC = struct.Struct("<qqqq")  # interval sec, nsec, value sec, nsec


def is_timerfd(fd):
    return fd.link == "anon_inode:[timerfd]"


def _pair(fd, key):
    found = PAIR.match(fd.fdinfo.get(key, ""))
    if not found:
        raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is a timerfd whose {key} this "
                              "kernel does not show in fdinfo")
    return int(found[1]), int(found[2])


def dump_fd(table, fd):
    vsec, vnsec = _pair(fd, "it_value")
    isec, insec = _pair(fd, "it_interval")
    return table.add(KIND, classes["timerfd_entry"](
        id=0, flags=fd.flags & ~O_CLOEXEC, fown=fd.owner(), clockid=int(fd.fdinfo["clockid"]),
        ticks=int(fd.fdinfo["ticks"]), settime_flags=int(fd.fdinfo["settime flags"], 8),
        vsec=vsec, vnsec=vnsec, isec=isec, insec=insec))


def open_entry(stub, entry):
    t = entry.tfd
    fd = syscall("timerfd_create", t.clockid, 0)
    value = t.vsec * NSEC + t.vnsec
    if value or t.isec or t.insec:
        if value and t.settime_flags & TFD_TIMER_ABSTIME:
            value += time.clock_gettime_ns(t.clockid)
        elif not value:
            value = 1  # expired with an interval: due again at once, as it was
        spec = ctypes.create_string_buffer(ITIMERSPEC.pack(t.isec, t.insec, *divmod(value, NSEC)))
        syscall("timerfd_settime", fd, t.settime_flags, spec, 0)
    if t.ticks:
        try:
            fcntl.ioctl(fd, TFD_IOC_SET_TICKS, struct.pack("<Q", t.ticks))
        except OSError as e:
            raise RestoreError(f"timerfd #{t.id}: cannot give back its {t.ticks} expiration(s) "
                               f"not read yet (TFD_IOC_SET_TICKS: {e.strerror})") from None
    set_status_flags(fd, t.flags)
    return high_dup(fd, stub.floor)


def label(entry):
    t = entry.tfd
    return (f"timerfd (clock {t.clockid}, {t.vsec}.{t.vnsec:09d} s left, every "
            f"{t.isec}.{t.insec:09d} s, {t.ticks} tick(s) unread)")


KIND = Kind(name="timerfd", fd_type=FD_TYPES["TIMERFD"], entry_field="tfd",
            match=is_timerfd, dump=dump_fd, check=nothing_to_check, open=open_entry,
            label=label)
