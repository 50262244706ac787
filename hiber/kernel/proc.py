"""Careful readers of /proc/PID/*.

A process that vanished while we read it raises NoSuchProcess; anything
else unexpected in a file's format raises ProcFormatError naming the file.
"""

import errno
import os
import re
import struct
from dataclasses import dataclass, field

from ..errors import HiberError


class NoSuchProcess(HiberError):
    def __init__(self, pid, what=""):
        self.pid = pid
        super().__init__(f"PID {pid} does not exist (any more){what}")


class ProcFormatError(HiberError):
    pass


def _path(pid, name, tid=None):
    if tid is not None:
        return f"/proc/{pid}/task/{tid}/{name}"
    return f"/proc/{pid}/{name}"


def read_text(pid, name, tid=None):
    return read_bytes(pid, name, tid).decode(errors="surrogateescape")


def read_bytes(pid, name, tid=None):
    try:
        with open(_path(pid, name, tid), "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None


def exists(pid):
    return os.path.exists(f"/proc/{pid}")


def thread_ids(pid):
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        raise NoSuchProcess(pid) from None


def children(pid, tid):
    """Children forked by one thread (/proc/PID/task/TID/children)."""
    try:
        text = read_text(pid, "children", tid)
    except NoSuchProcess:
        return []  # the thread exited meanwhile: its children moved elsewhere
    return [int(x) for x in text.split()]


@dataclass
class Stat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    flags: int
    nice: int
    num_threads: int
    start_time: int
    processor: int
    exit_code: int
    values: list  # every field after comm, as text, for the rarer ones

    def field(self, number):
        """Field by its proc(5) number (1 = pid)."""
        return self.values[number - 3]


def stat(pid, tid=None):
    text = read_text(pid, "stat", tid)
    # comm may hold spaces and parentheses: it runs to the last ')'
    open_paren, close_paren = text.index("("), text.rindex(")")
    comm = text[open_paren + 1:close_paren]
    rest = text[close_paren + 2:].split()
    v = rest

    def num(n):
        return int(v[n - 3])

    return Stat(int(text[:open_paren]), comm, v[0], num(4), num(5), num(6), num(9), num(19),
                num(20), num(22), num(39), num(52), rest)


def status(pid, tid=None):
    """/proc/PID/status as a dict of str -> str."""
    out = {}
    for line in read_text(pid, "status", tid).splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    vmflags: set = field(default_factory=set)
    anon_huge: int = 0
    page_kib: int = 4               # KernelPageSize: the huge page size of hugetlb
    protection_key: int = 0         # smaps shows it on CPUs with protection keys

    @property
    def prot(self):
        return (1 if self.perms[0] == "r" else 0) | (2 if self.perms[1] == "w" else 0) \
            | (4 if self.perms[2] == "x" else 0)

    @property
    def shared(self):
        return self.perms[3] == "s"

    @property
    def name(self):
        return f"{self.start:x}-{self.end:x} {self.perms} {self.path}".rstrip()


_MAP_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$")


def smaps(pid):
    """Every VMA of a process, with its VmFlags, in address order."""
    maps = []
    for line in read_text(pid, "smaps").splitlines():
        m = _MAP_LINE.match(line)
        if m:
            maps.append(Mapping(int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16), m[5],
                                int(m[6]), m[7]))
        elif line.startswith("VmFlags:"):
            maps[-1].vmflags = set(line.split()[1:])
        elif line.startswith("AnonHugePages:"):
            maps[-1].anon_huge = int(line.split()[1])
        elif line.startswith("KernelPageSize:"):
            maps[-1].page_kib = int(line.split()[1])
        elif line.startswith("ProtectionKey:"):
            maps[-1].protection_key = int(line.split()[1])
    return maps


def maps(pid):
    mappings = []
    for line in read_text(pid, "maps").splitlines():
        m = _MAP_LINE.match(line)
        if not m:
            raise ProcFormatError(f"/proc/{pid}/maps: cannot parse {line!r}")
        mappings.append(Mapping(int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16), m[5],
                                int(m[6]), m[7]))
    return mappings


def auxv(pid):
    """Raw auxv as u64 words, the AT_NULL pair included."""
    data = read_bytes(pid, "auxv")
    words = list(struct.unpack(f"<{len(data) // 8}Q", data))
    # the file may carry trailing zero pairs past AT_NULL: keep up to the first
    for i in range(0, len(words), 2):
        if words[i] == 0:
            return words[:i + 2]
    return words


def fds(pid):
    try:
        return sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        raise NoSuchProcess(pid) from None


def fd_link(pid, fd):
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:
        if not exists(pid):
            raise NoSuchProcess(pid) from None
        raise


def fdinfo(pid, fd):
    """/proc/PID/fdinfo/FD: the first-level "key: value" lines, plus raw text."""
    text = read_text(pid, f"fdinfo/{fd}")
    out = {"_text": text}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key not in out:
            out[key] = value.strip()
    return out


def limits(pid):
    """RLIMIT values from /proc/PID/limits, as [(cur, max)] by resource number.

    prlimit() on a process of another uid fails without CAP_SYS_RESOURCE,
    but this file is always readable (kernel-facts)."""
    infinity = (1 << 64) - 1
    out = []
    for line in read_text(pid, "limits").splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) < 3:
            continue
        soft, hard = (infinity if x == "unlimited" else int(x) for x in parts[1:3])
        out.append((soft, hard))
    return out


def map_file_path(pid, start, end):
    return f"/proc/{pid}/map_files/{start:x}-{end:x}"


def read_int(pid, name, default=None):
    try:
        return int(read_text(pid, name).split()[0])
    except (OSError, ValueError, IndexError):
        if default is None:
            raise
        return default


def is_zombie(pid):
    try:
        return stat(pid).state == "Z"
    except NoSuchProcess:
        return False


def ignore_enoent(fn, *args, default=None):
    try:
        return fn(*args)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return default
        raise
