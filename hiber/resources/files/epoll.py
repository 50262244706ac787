"""epoll instances (epoll(7)): the files they watch, each with its events
and data, as CRIU's eventpoll_file_entry with one eventpoll_tfd_entry per
watch (CRIU 4.2 keeps them inside the file entry, not in eventpoll-tfd.img).

Dump: fdinfo lists each watch as "tfd: N events: E data: D pos: P ino: I
sdev: S" (fs/eventpoll.c, ep_show_fdinfo). N is the fd number the watch
was added with, in the process that added it. The watched file is found as
fd N of the process holding the epoll, or, when N was closed or reused
since, as another fd with the same inode; kcmp's KCMP_EPOLL_TFD proves it
the same file (an inode alone cannot tell a pipe's two ends apart). Its
file entry is the watch's id. A file that no fd holds any more is refused.

Restore: a new epoll instance with the open flags. A watch is keyed by
the file *and* the fd number it was added with (a later EPOLL_CTL_MOD or
DEL by the program names that number), so watches are added once every fd
of the process is at its number (Kind.install), with the file put at the
watch's number for the moment of the call when it lives elsewhere now. The kernel then polls each
file again: what is ready is reported again, once more for edge-triggered
watches (as with CRIU). A one-shot watch that fired shows its events
masked off, and is added so, still disarmed.
"""

import contextlib
import ctypes
import errno
import os
import re

from ...errors import RestoreError
from ...images.messages import classes
from ...kernel import proc
from ...kernel.sys import is_epoll_target, syscall
from .common import O_CLOEXEC, UnsupportedFile, high_dup, set_status_flags
from .table import FD_TYPES, Kind

WATCH_LINE = re.compile(r"^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)\s+"
                        r"pos:\s*(\d+)\s+ino:\s*([0-9a-f]+)\s+sdev:\s*([0-9a-f]+)", re.M)


def is_epoll(fd):
    return fd.link == "anon_inode:[eventpoll]"


def watches(fdinfo_text):
    """(tfd, events, data, pos, ino, dev) of each watch an epoll fdinfo lists."""
    return [(int(m[1]), int(m[2], 16), int(m[3], 16), int(m[4]), int(m[5], 16), int(m[6], 16))
            for m in WATCH_LINE.finditer(fdinfo_text)]


def dump_fd(table, fd):
    entry = classes["eventpoll_file_entry"](id=0, flags=fd.flags & ~O_CLOEXEC,
                                            fown=fd.owner())
    seen = {}  # tfd -> watches with that fd number so far (KCMP_EPOLL_TFD's toff)
    inodes = None
    for tfd, events, data, pos, ino, dev in watches(fd.fdinfo["_text"]):
        toff = seen.get(tfd, 0)
        seen[tfd] = toff + 1
        holder = tfd
        if not is_epoll_target(fd.pid, tfd, fd.pid, fd.fd, tfd, toff):
            # fd tfd was closed or reused since the watch was added: the
            # file may still be open under another number (dup2 + close)
            if inodes is None:
                inodes = _fd_inodes(fd.pid)
            holder = next((other for other, (other_ino, other_dev) in inodes.items()
                           if other_ino == ino and is_epoll_target(fd.pid, other, fd.pid,
                                                                   fd.fd, tfd, toff)), None)
            if holder is None:
                raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is an epoll instance "
                                      f"watching a file (fd {tfd} when added) that no fd "
                                      "holds any more: hiber cannot restore it yet")
        target, _ = table.describe_fd(fd.pid, holder, proc.fdinfo(fd.pid, holder))
        entry.tfd.add(id=target, tfd=tfd, events=events, data=data, dev=dev, inode=ino,
                      pos=pos)
    return table.add(KIND, entry)


def _fd_inodes(pid):
    """fd -> (inode, device) of every fd of pid (the candidates for a watch
    whose fd number moved)."""
    out = {}
    for number in proc.fds(pid):
        try:
            info = os.stat(f"/proc/{pid}/fd/{number}")
        except OSError:
            continue
        out[number] = (info.st_ino, info.st_dev)
    return out


def check(files, entry):
    for watch in entry.epfd.tfd:
        files.entry(watch.id)  # refuses, in one line, a watch of a file not in files.img


def open_entry(stub, entry):
    fd = syscall("epoll_create1", 0)
    set_status_flags(fd, entry.epfd.flags)
    return high_dup(fd, stub.floor)


EPOLL_CTL_ADD = 1


def install(stub, entry, fd, fd_ids):
    """Add the watches, now that every fd of the process is at its number
    (``fd_ids``: fd number -> file id in this process). Processes sharing
    the instance add the same watches: the second finds them (EEXIST)."""
    event = (ctypes.c_uint32 * 3)()  # struct epoll_event is packed on x86-64: 12 bytes
    for watch in entry.epfd.tfd:
        event[0] = watch.events
        event[1] = watch.data & 0xffffffff
        event[2] = watch.data >> 32
        try:
            with _file_at(watch.tfd, watch.id, fd_ids, entry.id):
                syscall("epoll_ctl", fd, EPOLL_CTL_ADD, watch.tfd, event)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise RestoreError(f"epoll_ctl(EPOLL_CTL_ADD) of fd {watch.tfd} failed: "
                                   f"{e.strerror}") from None


@contextlib.contextmanager
def _file_at(number, file_id, fd_ids, epoll_id):
    """The file ``file_id`` at fd ``number`` for as long as the block runs:
    a watch added with a number the process no longer uses for that file
    (closed, or reused for another) is added with it all the same."""
    if fd_ids.get(number) == file_id:
        yield
        return
    holder = next((n for n, i in fd_ids.items() if i == file_id), None)
    if holder is None:
        raise RestoreError(f"the epoll instance #{epoll_id} watches file #{file_id}, "
                           "which no fd of this process holds")
    displaced = None
    if number in fd_ids:
        displaced = (os.dup(number), os.get_inheritable(number))
    os.dup2(holder, number)
    try:
        yield
    finally:
        if displaced is None:
            os.close(number)
        else:
            os.dup2(displaced[0], number, inheritable=displaced[1])
            os.close(displaced[0])


def label(entry):
    return f"epoll ({len(entry.epfd.tfd)} watches)"


KIND = Kind(name="epoll", fd_type=FD_TYPES["EVENTPOLL"], entry_field="epfd",
            match=is_epoll, dump=dump_fd, check=check, open=open_entry, label=label,
            install=install)
