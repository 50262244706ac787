"""fanotify groups (fanotify(7)), as CRIU 4.2 keeps them: the group's
flags and event flags, and each mark, on an inode (found again by its file
handle, as inotify's watches) or on a mount (found again by its mount id),
with its mask and ignored mask.  fdinfo lists them (fs/notify/fdinfo.c).
Events queued and not yet read are not kept, as with criu."""

import ctypes
import os

from ...images.messages import classes
from ...kernel import sys
from .common import O_CLOEXEC, UnsupportedFile, high_dup
from .inotify import _fields, handle_of, new_group, open_handle
from .table import FD_TYPES, Kind, nothing_to_check

libc = sys.libc
MARK_INODE, MARK_MOUNT = 1, 2
FAN_MARK_ADD, FAN_MARK_MOUNT, FAN_MARK_IGNORED_MASK = 0x1, 0x10, 0x20
AT_FDCWD = -100


def is_fanotify(fd):
    return fd.link == "anon_inode:[fanotify]"


def dump_fd(table, fd):
    entry = classes["fanotify_file_entry"](id=0, flags=fd.flags & ~O_CLOEXEC, fown=fd.owner(),
                                           faflags=0, evflags=0)
    for line in fd.fdinfo["_text"].splitlines():
        if not line.startswith("fanotify "):
            continue
        f = _fields(line)
        if "event-flags" in f:
            entry.faflags, entry.evflags = int(f["flags"], 16), int(f["event-flags"], 16)
            continue
        mark = entry.mark.add(id=0, mflags=int(f["mflags"], 16), mask=int(f["mask"], 16),
                              ignored_mask=int(f["ignored_mask"], 16), type=MARK_INODE,
                              s_dev=int(f.get("sdev", "0"), 16))
        if "mnt_id" in f:
            mark.type = MARK_MOUNT
            mark.me.mnt_id = int(f["mnt_id"], 16)
            path = _mount_point(mark.me.mnt_id, fd.pid)
            if path is not None:
                mark.me.path = path
        elif "f_handle" in f:
            mark.ie.i_ino = int(f["ino"], 16)
            mark.ie.f_handle.CopyFrom(handle_of(f))
        else:
            raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd}: a fanotify mark hiber cannot "
                                  f"name again ({line.strip()})")
    return table.add(KIND, entry)


def _mount_point(mnt_id, pid="self"):
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if int(fields[0]) == mnt_id:
                return fields[4].replace("\\040", " ")
    return None


def _mark(gfd, flags, mask, path, where):
    if not mask:
        return
    if libc.fanotify_mark(gfd, flags, ctypes.c_uint64(mask), AT_FDCWD, path.encode()) < 0:
        raise UnsupportedFile(f"fanotify mark on {where}: "
                              f"{os.strerror(ctypes.get_errno())}")


def open_entry(stub, entry):
    e = entry.ffy

    def marks(gfd):
        for m in e.mark:
            _restore_mark(gfd, m)
    return high_dup(new_group(entry.id, lambda: libc.fanotify_init(e.faflags, e.evflags),
                              marks, e.flags), stub.floor)


def _restore_mark(gfd, m):
    target = None
    if m.type == MARK_MOUNT:
        path = m.me.path if m.me.HasField("path") else _mount_point(m.me.mnt_id)
        if path is None:
            raise UnsupportedFile(f"fanotify mark: mount {m.me.mnt_id} is gone")
        flags = FAN_MARK_ADD | FAN_MARK_MOUNT | m.mflags
    else:
        target = open_handle(m.ie.f_handle, m.s_dev)
        if target is None:
            raise UnsupportedFile(f"fanotify mark: inode {m.ie.i_ino} cannot be found "
                                  "again by its file handle")
        path = f"/proc/self/fd/{target}"
        flags = FAN_MARK_ADD | m.mflags
    try:
        _mark(gfd, flags, m.mask, path, path)
        _mark(gfd, flags | FAN_MARK_IGNORED_MASK, m.ignored_mask, path, path)
    finally:
        if target is not None:
            os.close(target)


def label(entry):
    return f"fanotify group ({len(entry.ffy.mark)} mark(s))"


KIND = Kind(name="fanotify", fd_type=FD_TYPES["FANOTIFY"], entry_field="ffy",
            match=is_fanotify, dump=dump_fd, check=nothing_to_check, open=open_entry,
            label=label)
