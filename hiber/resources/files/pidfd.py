"""pidfds (pidfd_open(2)): a descriptor of a process, as CRIU 4.2 keeps it
(pidfd_entry: the process's PID, -1 once it is gone, the open flags and
the pidfd's inode).

A pidfd of a process of the tree is opened again on the restored process,
which has the same PID.  One of a process outside the tree is refused: the
restored pidfd would name whatever process has that PID then.  One of a
process that is gone is made on a short-lived helper, killed and reaped at
once, as criu does: such a pidfd only says the process has exited (poll),
and its signal fails with ESRCH.  fdinfo's "Pid:" line gives the PID
(kernel/pid.c, pidfd_show_fdinfo)."""

import os
import signal
import time

from ...images.messages import classes
from .common import O_CLOEXEC, UnsupportedFile, high_dup
from .table import FD_TYPES, Kind, nothing_to_check

PIDFD_NONBLOCK = os.O_NONBLOCK
PIDFD_THREAD = os.O_EXCL
# a pidfd of a process of the tree another stub is still making: wait for it
PID_WAIT = 10.0


def is_pidfd(fd):
    return fd.link in ("anon_inode:[pidfd]", "pidfd") or fd.link.startswith("pidfd:")


def dump_fd(table, fd):
    if fd.flags & PIDFD_THREAD:
        raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is a pidfd of a thread (PIDFD_THREAD), "
                              "which hiber cannot dump yet")
    pid = int(fd.fdinfo.get("Pid", "-1").split()[0])
    if pid > 0 and pid not in table.tree_tids:
        raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is a pidfd of PID {pid}, which is not "
                              "in the tree: after a restore it would name another process")
    entry = classes["pidfd_entry"](id=0, ino=fd.info.st_ino & 0xffffffff,
                                   flags=fd.flags & ~(O_CLOEXEC | os.O_RDWR),
                                   nspid=pid if pid > 0 else -1, fown=fd.owner())
    return table.add(KIND, entry)


def opens_late(files, entry):
    """A pidfd of a process of the tree is opened by the stub that holds it,
    once its own subtree exists; one of a process gone by the root stub
    before any fork, like the shared files, so that every process holding
    one of that process's gets one of the same helper (the same inode)."""
    return entry.HasField("pidfd") and entry.pidfd.nspid != -1


def open_entry(stub, entry):
    e = entry.pidfd
    flags = e.flags & PIDFD_NONBLOCK
    if e.nspid == -1:
        return _of_a_process_gone(stub, entry)
    deadline = time.monotonic() + PID_WAIT
    while True:
        try:
            return high_dup(os.pidfd_open(e.nspid, flags), stub.floor)
        except ProcessLookupError:
            # a sibling's subtree is forked after this one: its stub comes
            if time.monotonic() > deadline:
                raise UnsupportedFile(f"file #{entry.id}: PID {e.nspid}, whose pidfd it is, "
                                      "was not restored") from None
            time.sleep(0.001)


def _of_a_process_gone(stub, entry):
    """pidfds of one process that is gone share their inode (pidfs): all of
    this stub's with entry's inode are opened on one helper, killed and
    reaped once they are; the others are kept as already opened."""
    alike = [f for f in stub.files.by_id.values() if f.HasField("pidfd")
             and f.pidfd.nspid == -1 and f.pidfd.ino == entry.pidfd.ino
             and f.id not in stub.opened and f.id != entry.id]
    helper = os.fork()
    if helper == 0:
        while True:
            time.sleep(3600)
    try:
        for other in alike:
            stub.opened[other.id] = high_dup(
                os.pidfd_open(helper, other.pidfd.flags & PIDFD_NONBLOCK), stub.floor)
        return high_dup(os.pidfd_open(helper, entry.pidfd.flags & PIDFD_NONBLOCK), stub.floor)
    finally:
        os.kill(helper, signal.SIGKILL)
        os.waitpid(helper, 0)


def label(entry):
    e = entry.pidfd
    return "pidfd of a process gone" if e.nspid == -1 else f"pidfd of PID {e.nspid}"


KIND = Kind(name="pidfd", fd_type=FD_TYPES["PIDFD"], entry_field="pidfd",
            match=is_pidfd, dump=dump_fd, check=nothing_to_check, open=open_entry,
            label=label)
