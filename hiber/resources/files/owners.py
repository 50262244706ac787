"""The owner of an open file: who gets SIGIO (or the F_SETSIG signal) when
I/O becomes possible on an O_ASYNC file, and SIGURG on a socket (fcntl(2)
F_SETOWN_EX, F_SETSIG). CRIU's fown_entry, in every kind's file entry:
pid_type is the F_OWNER_* type (TID, PID, PGRP), pid the owner, uid and
euid the credentials of whoever set it, signum the F_SETSIG signal.

The owner belongs to the open file, not to an fd, and the kernel refuses an
owner that does not exist (f_setown: ESRCH). So a restore sets owners once
the whole tree is rebuilt (every PID, TID and group the owners name exists),
from hiber, through a duplicate of one fd of each open file. The kernel
records the credentials of the caller as the owner's, and checks them when
it sends the signal (sigio_perm): hiber takes the dumped uid and euid for
the moment of the call.
"""

import fcntl
import os
import struct

from ...errors import RestoreError
from ...images.messages import classes
from ...kernel import proc
from ...kernel.sys import pidfd_getfd, pidfd_open
from .common import O_ASYNC

F_SETSIG, F_GETSIG = 10, 11
F_SETOWN_EX, F_GETOWN_EX, F_GETOWNER_UIDS = 15, 16, 17
F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP = 0, 1, 2
OWNER_TYPE_WORDS = {F_OWNER_TID: "thread", F_OWNER_PID: "process",
                    F_OWNER_PGRP: "process group"}
OWNER_EX = struct.Struct("<ii")   # struct f_owner_ex: type, pid
OWNER_UIDS = struct.Struct("<II")  # uid, euid


def no_owner():
    """The fown_entry of a file nobody set an owner on (F_SETOWN)."""
    return classes["fown_entry"](uid=0, euid=0, signum=0, pid_type=0, pid=0)


def owner_of(fd):
    """The owner of the open file ``fd`` (hiber's duplicate of it)."""
    fown = no_owner()
    try:
        signum = fcntl.fcntl(fd, F_GETSIG)
        kind, pid = OWNER_EX.unpack(fcntl.fcntl(fd, F_GETOWN_EX, bytes(OWNER_EX.size)))
    except OSError:
        return fown
    fown.signum = signum
    if pid:
        fown.pid_type, fown.pid = kind, pid
        try:  # needs CONFIG_CHECKPOINT_RESTORE; without it, root's
            fown.uid, fown.euid = OWNER_UIDS.unpack(
                fcntl.fcntl(fd, F_GETOWNER_UIDS, bytes(OWNER_UIDS.size)))
        except OSError:
            pass
    return fown


def owner_in_words(fown):
    return f"{OWNER_TYPE_WORDS.get(fown.pid_type, 'owner')} {fown.pid}"


def _carrier(files, entry):
    """The message of a file entry that holds its flags and fown, whatever
    its kind. A FIFO's are in the REG entry it points to (regf_id), as CRIU
    writes them."""
    for field, message in entry.ListFields():
        if field.message_type is None:
            continue
        fields = message.DESCRIPTOR.fields_by_name
        if "fown" in fields:
            return message
        if "regf_id" in fields:
            return _carrier(files, files.entry(message.regf_id))
    return None


def _fown(files, entry):
    """The fown_entry of a file entry, or None."""
    message = _carrier(files, entry)
    return message.fown if message is not None and message.HasField("fown") else None


def rearm_async(files, fdinfo_entries):
    """In the stub, once its fds are at their numbers: the kernel keeps the
    fd number of the F_SETFL that set O_ASYNC and reports it in si_fd
    (fasync_helper), and open(2) sets the flag without arming it. So O_ASYNC
    is cleared and set again through the fd the process has, the first of
    several for one open file."""
    armed = set()
    for e in sorted(fdinfo_entries, key=lambda e: e.fd):
        message = _carrier(files, files.entry(e.id))
        if e.id in armed or not getattr(message, "flags", 0) & O_ASYNC:
            continue
        armed.add(e.id)
        flags = fcntl.fcntl(e.fd, fcntl.F_GETFL)
        fcntl.fcntl(e.fd, fcntl.F_SETFL, flags & ~O_ASYNC)
        fcntl.fcntl(e.fd, fcntl.F_SETFL, flags | O_ASYNC)


def _owned(plan):
    """(pid, fd, fown) for one fd of every open file that has an owner or a
    signal set, in the first process that holds it."""
    seen = set()
    for p in plan.live:
        for e in p.fdinfo:
            if e.id in seen:
                continue
            seen.add(e.id)
            fown = _fown(plan.files, plan.files.entry(e.id))
            if fown is not None and (fown.pid or fown.signum):
                yield p.pid, e.fd, fown


def check(plan):
    """Before a restore: each owner is a thread, process or group the tree
    brings back, or one living here now."""
    tids = {tid for p in plan.live for tid in (p.pid, *p.thread_cores)}
    groups = {p.pstree.pgid for p in plan.live}
    for pid, fd, fown in _owned(plan):
        if not fown.pid:
            continue
        ours = groups if fown.pid_type == F_OWNER_PGRP else \
            tids if fown.pid_type == F_OWNER_TID else {p.pid for p in plan.live}
        if fown.pid not in ours and not proc.exists(fown.pid):
            raise RestoreError(f"PID {pid} fd {fd}: its owner (F_SETOWN), "
                               f"{owner_in_words(fown)}, is neither restored nor running here")


def restore(plan):
    """Once every process is rebuilt: each open file's owner and signal."""
    for pid, fd, fown in _owned(plan):
        pidfd = pidfd_open(pid)
        try:
            ours = pidfd_getfd(pidfd, fd)
        finally:
            os.close(pidfd)
        try:
            set_owner(ours, fown)
        except OSError as e:
            raise RestoreError(f"PID {pid} fd {fd}: cannot give it its owner "
                               f"({owner_in_words(fown)}, signal {fown.signum}): "
                               f"{e.strerror}") from None
        finally:
            os.close(ours)


def set_owner(fd, fown):
    if fown.signum:
        fcntl.fcntl(fd, F_SETSIG, fown.signum)
    if not fown.pid:
        return
    owner = OWNER_EX.pack(fown.pid_type, fown.pid)
    ruid, euid, _ = os.getresuid()
    if (fown.uid, fown.euid) == (ruid, euid):
        fcntl.fcntl(fd, F_SETOWN_EX, owner)
        return
    # the saved uid stays hiber's, so hiber can take its own back afterwards
    os.setresuid(fown.uid, fown.euid, -1)
    try:
        fcntl.fcntl(fd, F_SETOWN_EX, owner)
    finally:
        os.setresuid(ruid, euid, -1)
