"""File locks (POSIX, OFD, flock, leases) held by the tree.

hiber does not checkpoint locks yet (CRIU's FileLockEntry, file-lock.img).
Dumping a process that holds one and restoring it without the lock would
let another process write under it (an sqlite database in exclusive mode,
a pid file), so such a dump is refused, with or without --file-locks.
"""

from ..errors import HiberError
from ..kernel import proc


class FileLocksHeld(HiberError):
    pass


def _locked_fds(pid):
    """fds whose open file holds a lock: fdinfo lists a "lock:" line for
    each lock owned through that open file (fs/proc/fd.c, show_fd_locks)."""
    held = []
    for fd in proc.fds(pid):
        try:
            text = proc.fdinfo(pid, fd)["_text"]
        except (proc.NoSuchProcess, FileNotFoundError):
            continue  # closed meanwhile (only a zombie's or an exiting task's)
        kinds = [line.split()[2] for line in text.splitlines()
                 if line.startswith("lock:") and len(line.split()) > 2]
        if kinds:
            held.append((fd, kinds[0]))
    return held


def refuse_file_locks(pids):
    """Raise FileLocksHeld if any process of the tree holds a file lock.

    fdinfo is enough, and /proc/locks (6 ms to read, even empty) is not
    read: a POSIX lock is dropped when any fd of its file is closed by its
    owner (locks_remove_posix), so a held one always shows on an open fd."""
    for pid in pids:
        held = _locked_fds(pid)
        if held:
            fd, kind = held[0]
            raise FileLocksHeld(
                f"PID {pid} holds a {kind} lock through fd {fd}: hiber cannot checkpoint "
                "file locks yet, and restoring without it would let others write under "
                "the process; release the lock, or use criu for this tree")
