"""inotify instances (inotify(7)), as CRIU 4.2 keeps them: each watch with
its descriptor number, mask and the watched inode as a file handle
(inotify_file_entry, inotify_wd_entry, fh_entry).

fdinfo lists the watches ("inotify wd:N ino:I sdev:D mask:M ignored_mask:0
fhandle-bytes:B fhandle-type:T f_handle:HEX", fs/notify/fdinfo.c).  On
restore the inode is found again by its handle (open_by_handle_at on its
file system), and watched with the same mask under the same number: the
kernel numbers watches upwards (idr_alloc_cyclic), so a watch that gets a
lower number is removed and added again until it gets its own.  Events
queued and not yet read are not kept, as with criu."""

import ctypes
import os
import struct

from ...images.messages import classes
from ...kernel import sys
from .common import O_CLOEXEC, UnsupportedFile, high_dup, set_status_flags
from .table import FD_TYPES, Kind, nothing_to_check

libc = sys.libc
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, O_CLOEXEC
# mask bits inotify_add_watch takes (include/uapi/linux/inotify.h): events,
# and IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK, IN_MASK_CREATE, IN_MASK_ADD, IN_ONESHOT
ADD_WATCH_MASK = 0x00000fff | 0x01000000 | 0x02000000 | 0x04000000 | 0x10000000 | \
    0x20000000 | 0x80000000
FH_MIN_ENTRIES = 16      # CRIU writes a handle as 16 u64 at least (fh.proto)
MAX_WD_TRIES = 1 << 16


def is_inotify(fd):
    return fd.link == "anon_inode:inotify"


def _fields(line):
    return dict(part.split(":", 1) for part in line.split()[1:] if ":" in part)


def handle_of(fields):
    """The fh_entry of fdinfo's fhandle-bytes, fhandle-type and f_handle (hex)."""
    raw = bytes.fromhex(fields["f_handle"])
    words = [int.from_bytes(raw[i:i + 8].ljust(8, b"\0"), "little")
             for i in range(0, len(raw), 8)]
    return classes["fh_entry"](bytes=int(fields["fhandle-bytes"], 16),
                               type=int(fields["fhandle-type"], 16),
                               handle=words + [0] * (FH_MIN_ENTRIES - len(words)))


def new_group(entry_id, create, fill, flags):
    """A notification group made by ``create()`` (an fd or -1), given its
    marks by ``fill(fd)`` and its status flags; closed if any fails."""
    fd = create()
    if fd < 0:
        raise UnsupportedFile(f"file #{entry_id}: {os.strerror(ctypes.get_errno())}")
    try:
        fill(fd)
        set_status_flags(fd, flags)
    except BaseException:
        os.close(fd)
        raise
    return fd


def dump_fd(table, fd):
    entry = classes["inotify_file_entry"](id=0, flags=fd.flags & ~O_CLOEXEC, fown=fd.owner())
    for line in fd.fdinfo["_text"].splitlines():
        if not line.startswith("inotify "):
            continue
        f = _fields(line)
        if "f_handle" not in f:
            raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd}: inotify watch {f.get('wd')} has no "
                                  "file handle (the watched file system exports none)")
        handle = handle_of(f)
        entry.wd.add(id=0, i_ino=int(f["ino"], 16), mask=int(f["mask"], 16),
                     ignored_mask=int(f["ignored_mask"], 16), s_dev=int(f["sdev"], 16),
                     wd=int(f["wd"]), f_handle=handle)
    return table.add(KIND, entry)


# ---- restore ------------------------------------------------------------------

def _mount_of(kernel_dev):
    """A mount point of the file system with this kernel dev_t (MKDEV:
    major << 20 | minor), from this process's mountinfo."""
    wanted = f"{kernel_dev >> 20}:{kernel_dev & 0xfffff}"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[2] == wanted:
                return fields[4].replace("\\040", " ")
    return None


def open_handle(handle, kernel_dev):
    """An O_PATH fd of the inode a file handle names, or None."""
    where = _mount_of(kernel_dev)
    if where is None:
        return None
    raw = b"".join(w.to_bytes(8, "little") for w in handle.handle)[:handle.bytes]
    buf = ctypes.create_string_buffer(struct.pack("=Ii", handle.bytes, handle.type) + raw)
    mount_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # not O_PATH: EBADF
    try:
        fd = libc.open_by_handle_at(mount_fd, buf, os.O_PATH | os.O_CLOEXEC)
        return fd if fd >= 0 else None
    finally:
        os.close(mount_fd)


def _watch(ifd, w):
    target = open_handle(w.f_handle, w.s_dev)
    if target is None:
        raise UnsupportedFile(f"inotify watch {w.wd}: its inode {w.i_ino} cannot be found "
                              "again by its file handle")
    try:
        path = f"/proc/self/fd/{target}".encode()
        for _ in range(MAX_WD_TRIES):
            wd = libc.inotify_add_watch(ifd, path, w.mask & ADD_WATCH_MASK)
            if wd < 0:
                e = ctypes.get_errno()
                raise UnsupportedFile(f"inotify watch {w.wd}: {os.strerror(e)}")
            if wd == w.wd:
                return
            if wd > w.wd:
                raise UnsupportedFile(f"inotify watch {w.wd} came back as {wd}")
            libc.inotify_rm_watch(ifd, wd)  # the kernel numbers upwards: try again
        raise UnsupportedFile(f"inotify watch {w.wd} could not get its number back")
    finally:
        os.close(target)


def _drain(ifd):
    """Removing the watches that came back under too low a number queued an
    IN_IGNORED event each: the process never made them, it must not read them."""
    os.set_blocking(ifd, False)
    try:
        while os.read(ifd, 65536):
            pass
    except BlockingIOError:
        pass


def open_entry(stub, entry):
    e = entry.ify

    def watches(ifd):
        for w in sorted(e.wd, key=lambda w: w.wd):
            _watch(ifd, w)
        _drain(ifd)
    return high_dup(new_group(entry.id, lambda: libc.inotify_init1(IN_CLOEXEC), watches,
                              e.flags), stub.floor)


def label(entry):
    return f"inotify ({len(entry.ify.wd)} watch(es))"


KIND = Kind(name="inotify", fd_type=FD_TYPES["INOTIFY"], entry_field="ify",
            match=is_inotify, dump=dump_fd, check=nothing_to_check, open=open_entry,
            label=label)
