"""Namespace files (/proc/PID/ns/KIND held open, as setns(2) wants them), as
CRIU 4.2 keeps them (ns_file_entry: the namespace's id and CLONE_NEW* flag).

One of a namespace the process lives in comes back as the same file of the
restored process's namespace of that kind (which the restore made again, or
which is hiber's, shared); one of any other namespace is refused: hiber does
not know which namespace it would be after a restore."""

import os
import re

from ...images.messages import classes
from .common import O_CLOEXEC, UnsupportedFile, high_dup
from .table import FD_TYPES, Kind, nothing_to_check

CLONE_FLAGS = {"mnt": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
               "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000, "time": 0x00000080}
NS_LINK = re.compile(r"^(\w+):\[(\d+)\]$")


def is_ns_file(fd):
    named = NS_LINK.match(fd.link)
    return named is not None and named[1] in CLONE_FLAGS


def dump_fd(table, fd):
    kind, inode = NS_LINK.match(fd.link).groups()
    inode = int(inode)
    own = [k for k in (kind, f"{kind}_for_children")
           if os.path.exists(f"/proc/{fd.pid}/ns/{k}")
           and os.stat(f"/proc/{fd.pid}/ns/{k}").st_ino == inode]
    if not own:
        raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is a file of a {kind} namespace it does "
                              "not live in: hiber cannot tell which namespace that would be "
                              "after a restore")
    entry = classes["ns_file_entry"](id=0, ns_id=table.ns_id(fd.pid, own[0]) or 0,
                                     ns_cflag=CLONE_FLAGS[kind],
                                     flags=fd.flags & ~O_CLOEXEC)
    return table.add(KIND, entry)


def open_entry(stub, entry):
    kind = next(k for k, flag in CLONE_FLAGS.items() if flag == entry.nsf.ns_cflag)
    return high_dup(os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | O_CLOEXEC), stub.floor)


KIND = Kind(name="namespace file", fd_type=FD_TYPES["NS"], entry_field="nsf",
            match=is_ns_file, dump=dump_fd, check=nothing_to_check, open=open_entry,
            label=lambda entry: f"namespace file ({entry.nsf.ns_cflag:#x})")
