"""File locks held by the tree: POSIX, OFD and flock locks and leases
(CRIU's filelocks.img, FileLockEntry), with --file-locks as criu.

Dump: each fd's fdinfo lists, on "lock:" lines, the locks held through it
(fs/locks.c, lock_get_status; fs/proc/fd.c shows those owned by this file
or, for POSIX locks, by this process's files).  A POSIX lock belongs to a
process; a flock or OFD lock, or a lease, to the open file, which may be
shared by several fds and processes: it is written once, with the first
(pid, fd) met.  A lease being broken is refused.

Restore: each stub takes its locks on its fds once they are in place,
before the tree runs, without waiting: a lock someone else took meanwhile
is an error naming it, never a restore that hangs or goes on unlocked.
Without --file-locks a tree holding locks is refused at dump, and images
holding locks at restore: dropping them would let others write under the
process (an sqlite database, a pid file)."""

import fcntl
import os
import struct

from ..errors import HiberError
from ..images.messages import classes as C
from ..kernel import proc

# FileLockEntry.flag and .type, as CRIU numbers them (criu/include/file-lock.h)
FL_POSIX, FL_FLOCK, FL_OFD, FL_LEASE = 1, 2, 4, 8
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
KIND_FLAGS = {"POSIX": FL_POSIX, "FLOCK": FL_FLOCK, "OFDLCK": FL_OFD, "LEASE": FL_LEASE}
TYPES = {"READ": F_RDLCK, "WRITE": F_WRLCK, "UNLCK": F_UNLCK}
F_SETLK, F_OFD_SETLK, F_SETLEASE = 6, 37, 1024
FLOCK = struct.Struct("@hhqqi")  # struct flock: type, whence, start, len, pid


class FileLocksHeld(HiberError):
    pass


def _lock_lines(pid, fd):
    """The "lock:" lines of an fd, split: [id, kind, mode, type, pid, dev:ino, start, end]."""
    try:
        text = proc.fdinfo(pid, fd)["_text"]
    except (proc.NoSuchProcess, FileNotFoundError):
        return []  # closed meanwhile (only a zombie's or an exiting task's)
    return [line.split()[1:] for line in text.splitlines()
            if line.startswith("lock:") and len(line.split()) > 8]


def refuse_file_locks(pids):
    """Without --file-locks: raise FileLocksHeld if the tree holds a lock.
    fdinfo is enough (/proc/locks takes 6 ms to read, even empty): a POSIX
    lock is dropped when its owner closes any fd of the file
    (locks_remove_posix), so a held one always shows on an open fd."""
    for pid in pids:
        for fd in proc.fds(pid):
            lines = _lock_lines(pid, fd)
            if lines:
                raise FileLocksHeld(
                    f"PID {pid} holds a {lines[0][1]} lock through fd {fd}: dump with "
                    "--file-locks to take it along, or release it; restoring without it "
                    "would let others write under the process")


def dump(collected):
    """file_lock_entry messages for the locks of the collected processes
    (ProcessImages: pid and fdinfo, whose file ids tell shared open files)."""
    entries, seen = [], set()
    for c in collected:
        for e in sorted(c.fdinfo, key=lambda e: e.fd):
            for fields in _lock_lines(c.pid, e.fd):
                _, kind, mode, ltype, owner, inode, start, end = fields[:8]
                if kind not in KIND_FLAGS:
                    raise FileLocksHeld(f"PID {c.pid} fd {e.fd} holds a {kind} lock, which "
                                        "hiber cannot dump")
                if kind == "LEASE" and mode != "ACTIVE":
                    raise FileLocksHeld(f"PID {c.pid} fd {e.fd}: its lease is being broken "
                                        f"({mode}); dump once the lease breaker is done")
                # a POSIX lock is its process's; the others its open file's
                holder = (c.pid,) if kind == "POSIX" else (e.id,)
                key = (kind, holder, inode, start, end, ltype)
                if key in seen:
                    continue
                seen.add(key)
                first = int(start)
                length = 0 if end == "EOF" else int(end) + 1 - first
                entries.append(C["file_lock_entry"](flag=KIND_FLAGS[kind], type=TYPES[ltype],
                                                    pid=c.pid, fd=e.fd, start=first,
                                                    len=length))
    return entries


def check_restore(images, options):
    """Images with locks are restored with --file-locks only."""
    if images.exists("FILE_LOCKS") and images.read("FILE_LOCKS") and \
            not options.file_locks:
        raise FileLocksHeld("the images hold file locks: restore with --file-locks to take "
                            "them again (without them others could write under the process)")


def _of(images, pid):
    if not images.exists("FILE_LOCKS"):
        return []
    return [lock for lock in images.read("FILE_LOCKS") if lock.pid == pid]


def take(images, pid):
    """In the stub of pid, with its fds in place: its flock and OFD locks and
    leases, which belong to open files.  POSIX locks wait for take_posix:
    a process's POSIX lock goes when it closes any fd of that file
    (locks_remove_posix), and the restore still closes its helper fds."""
    for lock in _of(images, pid):
        if not lock.flag & FL_POSIX:
            _take(lock)


def take_posix(task, scratch, images, pid):
    """In the rebuilt process, once hiber's helper fds are closed: its POSIX
    locks, by fcntl(F_SETLK) injected into it, so that it owns them."""
    for lock in _of(images, pid):
        if not lock.flag & FL_POSIX:
            continue
        task.write(scratch, FLOCK.pack(lock.type, os.SEEK_SET, lock.start, lock.len, 0))
        try:
            task.syscall("fcntl", lock.fd, F_SETLK, scratch)
        except OSError as e:
            raise FileLocksHeld(f"PID {pid} fd {lock.fd}: cannot take its POSIX lock again "
                                f"({e.strerror}): another process holds one on that file "
                                "now") from None


def _take(lock):
    try:
        if lock.flag & FL_FLOCK:
            fcntl.flock(lock.fd, (fcntl.LOCK_EX if lock.type == F_WRLCK else fcntl.LOCK_SH)
                        | fcntl.LOCK_NB)
        elif lock.flag & (FL_POSIX | FL_OFD):
            # never F_SETLKW: a lock taken meanwhile must fail the restore, not hang it
            cmd = F_OFD_SETLK if lock.flag & FL_OFD else F_SETLK
            fcntl.fcntl(lock.fd, cmd, FLOCK.pack(lock.type, os.SEEK_SET, lock.start,
                                                 lock.len, 0))
        elif lock.flag & FL_LEASE:
            fcntl.fcntl(lock.fd, F_SETLEASE, lock.type)
        else:
            raise FileLocksHeld(f"filelocks.img: lock kind {lock.flag} is unknown")
    except OSError as e:
        raise FileLocksHeld(f"PID {lock.pid} fd {lock.fd}: cannot take its lock again "
                            f"({e.strerror}): another process holds one on that file "
                            "now") from None
