"""The IPC namespace: its limits and its System V objects, as CRIU 4.2
keeps them: ipcns-var-N.img (the kernel/ and fs/mqueue/ sysctls),
ipcns-shm-N.img (each segment; its contents in pagemap-shmem-ID.img, ID the
segment's IPC id), ipcns-sem-N.img (each set, its values after it) and
ipcns-msg-N.img (each queue, then each message and its text).

hiber reads and makes them from inside the namespace (switch.py): the
syscalls, /proc/sysvipc and the sysctl files all act on the caller's.
Objects come back with their ids (the kernel's *_next_id sysctls say which
id the next object takes), keys, modes, owners and contents; the
namespace's own next ids are set last, after the objects took theirs."""

import os

from ...errors import HiberError
from ...images.messages import classes as C
from ...images.pagemap import PAGE_SIZE
from ...kernel import sysv
from ..files.memfd import write_chunks, write_object_pages
from . import switch


class IpcError(HiberError):
    pass


# ipc_var_entry field -> sysctl, in the order CRIU writes them
SYSCTLS = [("msg_ctlmax", "kernel/msgmax"), ("msg_ctlmnb", "kernel/msgmnb"),
           ("auto_msgmni", "kernel/auto_msgmni"), ("msg_ctlmni", "kernel/msgmni"),
           ("shm_ctlmax", "kernel/shmmax"), ("shm_ctlall", "kernel/shmall"),
           ("shm_ctlmni", "kernel/shmmni"), ("shm_rmid_forced", "kernel/shm_rmid_forced"),
           ("mq_queues_max", "fs/mqueue/queues_max"), ("mq_msg_max", "fs/mqueue/msg_max"),
           ("mq_msgsize_max", "fs/mqueue/msgsize_max"),
           ("mq_msg_default", "fs/mqueue/msg_default"),
           ("mq_msgsize_default", "fs/mqueue/msgsize_default")]
NEXT_IDS = [("msg_next_id", "kernel/msg_next_id"), ("sem_next_id", "kernel/sem_next_id"),
            ("shm_next_id", "kernel/shm_next_id")]


def _sysctl(name):
    with open(f"/proc/sys/{name}") as f:
        return f.read().split()


def _set_sysctl(name, value):
    with open(f"/proc/sys/{name}", "w") as f:
        f.write(str(value))


def _objects(kind):
    """Rows of /proc/sysvipc/KIND (the caller's namespace), by column name."""
    with open(f"/proc/sysvipc/{kind}") as f:
        header = f.readline().split()
        return [dict(zip(header, line.split())) for line in f if line.strip()]


def _desc(row, id_column):
    return C["ipc_desc_entry"](key=int(row["key"]) & 0xffffffff, uid=int(row["uid"]),
                               gid=int(row["gid"]), cuid=int(row["cuid"]),
                               cgid=int(row["cgid"]), mode=int(row["perms"], 8),
                               id=int(row[id_column]))


# ---- dump ------------------------------------------------------------------

def dump(images, pid, ns_id, pages):
    """pages: a callable giving the next free pages id."""
    with switch.inside_of("ipc", pid):
        images.write("IPC_VAR", ns_id, [_variables()])
        images.write("IPCNS_SHM", ns_id, _segments(images, pages))
        images.write("IPCNS_SEM", ns_id, _semaphores())
        images.write("IPCNS_MSG", ns_id, _queues())


def _variables():
    var = C["ipc_var_entry"](sem_ctls=[int(v) for v in _sysctl("kernel/sem")])
    for field, name in SYSCTLS + NEXT_IDS:
        try:
            value = int(_sysctl(name)[0])
        except FileNotFoundError:
            continue  # mqueue's sysctls without CONFIG_POSIX_MQUEUE
        if value < 0:
            continue  # a next id of -1: "the kernel chooses", and cannot be written
        setattr(var, field, value)
    return var


def _segments(images, pages):
    entries = []
    buffer = bytearray(1 << 20)
    for row in _objects("shm"):
        desc = _desc(row, "shmid")
        size = int(row["size"])
        fd = _segment_file(desc.id, size, os.O_RDONLY)
        try:
            if os.fstatvfs(fd).f_bsize > PAGE_SIZE:
                raise IpcError(f"SysV shared memory segment {desc.id} is made of huge pages, "
                               "which hiber cannot dump yet")
            write_object_pages(images, desc.id, pages(), fd, size, buffer)
        finally:
            os.close(fd)
        entries.append(C["ipc_shm_entry"](desc=desc, size=size, in_pagemaps=True))
    return entries


def _segment_file(ipc_id, size, flags):
    """The shmem file behind a segment, through a moment's attachment."""
    address = sysv.shmat(ipc_id, sysv.SHM_RDONLY if flags == os.O_RDONLY else 0)
    try:
        end = address + (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
        return os.open(f"/proc/self/map_files/{address:x}-{end:x}", flags | os.O_CLOEXEC)
    finally:
        sysv.shmdt(address)


def _semaphores():
    entries = []
    for row in _objects("sem"):
        desc = _desc(row, "semid")
        nsems = int(row["nsems"])
        values = sysv.sem_values(desc.id, nsems)
        raw = b"".join(v.to_bytes(2, "little") for v in values)
        entries.append((C["ipc_sem_entry"](desc=desc, nsems=nsems),
                        raw + bytes(-len(raw) % 8)))
    return entries


def _queues():
    """Each queue's entry, then each of its messages with its text padded to
    8 bytes (framing.QueuedMessages reads them back)."""
    max_size = int(_sysctl("kernel/msgmax")[0])
    entries = []
    for row in _objects("msg"):
        desc = _desc(row, "msqid")
        count = int(row["qnum"])
        entries.append(C["ipc_msg_entry"](desc=desc, qbytes=sysv.msg_qbytes(desc.id),
                                          qnum=count))
        for index in range(count):
            mtype, text = sysv.msg_copy(desc.id, index, max_size)
            entries.append((C["ipc_msg"](mtype=mtype, msize=len(text)),
                            text + bytes(-len(text) % 8)))
    return entries


# ---- restore ----------------------------------------------------------------

def make(images, ns_id):
    """A new IPC namespace holding the dumped objects; its descriptor."""
    with switch.fresh("ipc") as ns:
        var = images.read_one("IPC_VAR", ns_id)
        _set_sysctl("kernel/sem", " ".join(map(str, var.sem_ctls)))
        for field, name in SYSCTLS:
            if var.HasField(field) and os.path.exists(f"/proc/sys/{name}"):
                _set_sysctl(name, getattr(var, field))
        for entry in _entries(images, "IPCNS_SHM", ns_id):
            _make_segment(images, entry.message, entry.extra)
        for entry in _entries(images, "IPCNS_SEM", ns_id):
            _make_semaphores(entry.message, entry.extra)
        queue = None
        for entry in _entries(images, "IPCNS_MSG", ns_id):
            if entry.message.DESCRIPTOR.name == "ipc_msg_entry":
                queue = _make_queue(entry.message)
            else:
                sysv.msgsnd(queue, entry.message.mtype, entry.extra[:entry.message.msize])
        for field, name in NEXT_IDS:
            if var.HasField(field):
                _set_sysctl(name, getattr(var, field))
    return ns


def _entries(images, type_name, ns_id):
    return images.read_entries(type_name, ns_id) if images.exists(type_name, ns_id) else []


def _with_id(kind, desc, create):
    """Make an object, which the kernel must give the dumped id."""
    _set_sysctl(f"kernel/{kind}_next_id", desc.id)
    try:
        got = create(desc.key, desc.mode & 0o777 | sysv.IPC_CREAT | sysv.IPC_EXCL)
    except OSError as e:
        raise IpcError(f"cannot make SysV {kind} {desc.id} (key {desc.key:#x}) again: "
                       f"{e.strerror}") from None
    if got != desc.id:
        raise IpcError(f"SysV {kind} {desc.id} came back as {got}")
    return got


def _make_segment(images, shm, inline):
    flags = shm.hugetlb_flag if shm.HasField("hugetlb_flag") else 0
    ipc_id = _with_id("shm", shm.desc, lambda key, mode: sysv.shmget(key, shm.size, mode | flags))
    sysv.set_owner("shm", ipc_id, shm.desc.uid, shm.desc.gid)
    fd = _segment_file(ipc_id, shm.size, os.O_RDWR)
    try:
        if shm.in_pagemaps:
            if images.exists("SHMEM_PAGEMAP", ipc_id):
                pagemap = images.pagemap(ipc_id, shmem=True)
                write_chunks(fd, images.pages_reader(pagemap).chunks())
        elif inline:
            write_chunks(fd, [(0, inline[:shm.size])])
    finally:
        os.close(fd)


def _make_semaphores(sem, raw):
    ipc_id = _with_id("sem", sem.desc, lambda key, mode: sysv.semget(key, sem.nsems, mode))
    sysv.set_owner("sem", ipc_id, sem.desc.uid, sem.desc.gid)
    values = [int.from_bytes(raw[2 * i:2 * i + 2], "little") for i in range(sem.nsems)]
    sysv.set_sem_values(ipc_id, values)


def _make_queue(queue):
    ipc_id = _with_id("msg", queue.desc, sysv.msgget)
    sysv.set_owner("msg", ipc_id, queue.desc.uid, queue.desc.gid, qbytes=queue.qbytes)
    return ipc_id
