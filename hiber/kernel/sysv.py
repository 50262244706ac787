"""System V IPC syscalls (x86-64), for reading and rebuilding the objects of
an IPC namespace: the calls act on the caller's IPC namespace.

The native x86-64 syscalls take the 64-bit layouts without the IPC_64 flag
(which they refuse).  Only the ipc64_perm head of the *id64_ds structures is laid out here (the
same 48 bytes at offset 0 of all three, include/uapi/asm-generic/ipcbuf.h):
uid at 4, gid at 8.  msg_qbytes sits at 88 of msqid64_ds on 64-bit
(asm-generic/msgbuf.h: three times, cbytes, qnum, then qbytes)."""

import ctypes
import struct

from . import sys

sys.NR.update(shmget=29, shmat=30, shmctl=31, semget=64, semctl=66, shmdt=67, msgget=68,
              msgsnd=69, msgrcv=70, msgctl=71)

IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_NOWAIT = 0o4000
IPC_RMID, IPC_SET, IPC_STAT = 0, 1, 2
SHM_RDONLY = 0o10000
GETALL, SETALL = 13, 17
MSG_COPY = 0o40000
DS_SIZE = 128          # more than any *id64_ds
PERM_UID, PERM_GID = 4, 8
MSG_QBYTES = 88
MSGBUF_HEAD = 8        # struct msgbuf: long mtype, then the text


def _ctl(ctl, ipc_id, cmd, buf):
    # semctl has a semaphore number before the command
    args = (ipc_id, 0, cmd, buf) if ctl == "semctl" else (ipc_id, cmd, buf)
    return sys.syscall(ctl, *args)


def _stat(ctl, ipc_id):
    buf = ctypes.create_string_buffer(DS_SIZE)
    _ctl(ctl, ipc_id, IPC_STAT, buf)
    return buf


def _set(ctl, ipc_id, buf):
    _ctl(ctl, ipc_id, IPC_SET, buf)


def set_owner(kind, ipc_id, uid, gid, qbytes=None):
    """IPC_SET the owner (and a queue's size limit) of an object."""
    ctl = {"shm": "shmctl", "sem": "semctl", "msg": "msgctl"}[kind]
    buf = _stat(ctl, ipc_id)
    struct.pack_into("<II", buf, PERM_UID, uid, gid)
    if qbytes is not None:
        struct.pack_into("<Q", buf, MSG_QBYTES, qbytes)
    _set(ctl, ipc_id, buf)


def msg_qbytes(ipc_id):
    return struct.unpack_from("<Q", _stat("msgctl", ipc_id), MSG_QBYTES)[0]


def shmget(key, size, flags):
    return sys.syscall("shmget", key, size, flags)


def shmat(ipc_id, flags):
    return sys.syscall("shmat", ipc_id, 0, flags)


def shmdt(address):
    sys.syscall("shmdt", address)


def semget(key, nsems, flags):
    return sys.syscall("semget", key, nsems, flags)


def sem_values(ipc_id, nsems):
    values = (ctypes.c_uint16 * max(nsems, 1))()
    sys.syscall("semctl", ipc_id, 0, GETALL, values)
    return list(values[:nsems])


def set_sem_values(ipc_id, values):
    array = (ctypes.c_uint16 * max(len(values), 1))(*values)
    sys.syscall("semctl", ipc_id, 0, SETALL, array)


def msgget(key, flags):
    return sys.syscall("msgget", key, flags)


def msg_copy(ipc_id, index, max_size):
    """Message number index of a queue, left in the queue (MSG_COPY):
    (mtype, text)."""
    buf = ctypes.create_string_buffer(MSGBUF_HEAD + max_size)
    n = sys.syscall("msgrcv", ipc_id, buf, max_size, index, IPC_NOWAIT | MSG_COPY)
    return struct.unpack_from("<q", buf, 0)[0], buf.raw[MSGBUF_HEAD:MSGBUF_HEAD + n]


def msgsnd(ipc_id, mtype, text):
    buf = ctypes.create_string_buffer(struct.pack("<q", mtype) + text, MSGBUF_HEAD + len(text))
    sys.syscall("msgsnd", ipc_id, buf, len(text), IPC_NOWAIT)


def remove(kind, ipc_id):
    _ctl({"shm": "shmctl", "sem": "semctl", "msg": "msgctl"}[kind], ipc_id, IPC_RMID, 0)
