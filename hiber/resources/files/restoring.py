"""The restore side of open files.

FileImages reads files.img and the kinds' own images in hiber, before
anything is created, and checks every file the images use. StubFiles runs
in the root stub, still a copy of hiber: it opens every open file of the
tree once, at high temporary numbers, so that children forked afterwards
inherit them (a shared file keeps one position, a pipe stays one pipe),
then each process puts its fds at their numbers.
"""

import os
import re

from ...errors import RestoreError
from ...options import Options
from .common import UnsupportedFile
from . import owners
from .kinds import KINDS
from .table import KindStates


class FileImages:
    """files.img by id, and what each kind reads of its own images."""

    def __init__(self, images, options=None):
        self.by_id = {f.id: f for f in images.read_optional("FILES")}
        self.options = options or Options()  # what the kinds may restore (--ext-unix-sk ...)
        self.tree_pids = frozenset()    # the PIDs the restore makes (from pstree.img)
        self._data = {kind.name: kind.read_images(images) for kind in KINDS.kinds
                      if kind.read_images is not None}

    def entry(self, file_id):
        f = self.by_id.get(file_id)
        if f is None:
            raise RestoreError(f"files.img has no file #{file_id}, which the images use")
        return f

    def data(self, kind):
        return self._data[kind.name]

    def watched_numbers(self):
        """fd numbers an epoll watch names (they may hold no fd now)."""
        return [w.tfd for f in self.by_id.values() if f.HasField("epfd") for w in f.epfd.tfd]

    def check(self, file_ids):
        """Refuse, in one line, what could not be restored right."""
        for file_id in sorted(file_ids):
            f = self.entry(file_id)
            KINDS.of_entry(f).check(self, f)


# /proc/PID/fd/N, /proc/PID/fdinfo/N: openable only while fd N exists
PROC_FD_FILE = re.compile(r"^/proc/\d+/(task/\d+/)?(fd|fdinfo)/\d+$")


class StubFiles(KindStates):
    """Opens every file object of a process at a high temporary number, then
    puts each fd at its number. Objects shared by several fds are opened once
    and dup'ed, so they stay one open file (shared position and flags)."""

    def __init__(self, files, shared, floor, shell_tty=None):
        super().__init__()
        self.files = files              # FileImages
        self.shared = shared            # memfd.StubObjects: the tree's shared memory objects
        self.floor = floor              # temporary fds live at or above it
        self.shell_tty = shell_tty      # hiber's terminal, for a shell job's tty fds
        self.opened = {}                # file id -> temporary fd
        self._temporaries = set()       # fds kinds opened beside (pipe ends, FIFO keepers)

    def temporary(self, fd):
        """An fd a kind needs until the fds are in place, then closed."""
        self._temporaries.add(fd)
        return fd

    def open_object(self, file_id):
        if file_id in self.opened:
            return self.opened[file_id]
        f = self.files.entry(file_id)
        fd = KINDS.of_entry(f).open(self, f)
        self.opened[file_id] = fd
        return fd

    def map_fd(self, file_id, mode):
        """An fd to mmap a file-backed VMA from (or to make the exe of)."""
        f = self.files.entry(file_id)
        kind = KINDS.of_entry(f)
        if kind.map_fd is None:
            raise UnsupportedFile(f"file #{file_id} is a {kind.name}, which cannot be mapped")
        return kind.map_fd(self, f, mode)

    def install(self, fdinfo_entries):
        """Open every object, put every fd at its number, with its FD_CLOEXEC.
        A /proc/PID/fd or fdinfo file of an fd opens once that fd is there."""
        first = [e for e in fdinfo_entries if not self._names_an_fd(e.id)]
        for group in (first, [e for e in fdinfo_entries if e not in first]):
            for e in group:
                self.open_object(e.id)
            for e in group:
                os.dup2(self.opened[e.id], e.fd, inheritable=not e.flags & 1)
        fd_ids = {e.fd: e.id for e in fdinfo_entries}
        for e in fdinfo_entries:
            f = self.files.entry(e.id)
            kind = KINDS.of_entry(f)
            if kind.install is not None:
                kind.install(self, f, e.fd, fd_ids)
        self.close_temporaries()
        owners.rearm_async(self.files, fdinfo_entries)

    def _names_an_fd(self, file_id):
        f = self.files.entry(file_id)
        return f.HasField("reg") and PROC_FD_FILE.match(f.reg.name) is not None

    def close_temporaries(self):
        for fd in set(self.opened.values()) | self._temporaries:
            os.close(fd)
        self.opened.clear()
        self._states.clear()
        self._temporaries.clear()
