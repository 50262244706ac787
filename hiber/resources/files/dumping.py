"""The dump side of open files: files.img, each process's fdinfo entries,
and the images the kinds keep beside (written by their own state)."""

from ...images.messages import classes
from ...kernel import proc
from ...kernel.sys import KCMP_FILE, kcmp
from ...options import Options
from . import memfd, regular
from .common import O_CLOEXEC
from .kinds import KINDS
from .table import FileEntry, KindStates, OpenFd


class FileTable(KindStates):
    """Allocates file_entry ids (from 1, in dump order) and keeps the entries.

    An open file shared by several fds (dup, fork) is one entry: kcmp tells.
    A kind that keeps more than its entries (the data queued in pipes, the
    files already seen mapped) keeps it in ``state(kind, make)``; a state
    with a ``write_images(images)`` method writes its own images, one with a
    ``finish()`` method checks what needs the whole tree.
    """

    def __init__(self, shell_job=False, tree_tids=frozenset(), net_ns_id=0, options=None,
                 ns_id=None):
        super().__init__()
        # (pid, kind) -> the id ids-PID.img gives pid's namespace of that kind
        self.ns_id = ns_id or (lambda pid, kind: 0)
        self.options = options or Options()  # what the kinds may dump (--ext-unix-sk ...)
        self.shell_job = shell_job  # terminals are dumped only for a shell job
        self.tree_tids = tree_tids  # every TID of the tree being dumped
        self.net_ns_id = net_ns_id  # the id of the tree's network namespace (ids-PID.img)
        self.entries = []           # file_entry messages, files.img order
        self._open = []             # (pid, fd, id) of open file descriptions seen
        self.shmem = memfd.SharedObjects(self)

    def add(self, kind, message):
        """Append a file_entry holding ``message`` (its id is set here) as a
        file of ``kind``; returns the id."""
        file_id = len(self.entries) + 1
        message.id = file_id
        self.entries.append(FileEntry(type=kind.fd_type, id=file_id,
                                      **{kind.entry_field: message}))
        return file_id

    def mapped_file(self, path, info, source=None):
        """The file id of a file mapped by a VMA (source: its map_files link)."""
        return regular.mapped_file(self, path, info, source)

    def path_entry(self, pid, link, what):
        """The file id of a process's exe, cwd or root (``link`` in /proc)."""
        return regular.path_entry(self, pid, link, what)

    def describe_fd(self, pid, fd, fdinfo):
        """Return (file id, fd type) for one fd of a frozen process;
        ``fdinfo`` is what /proc/PID/fdinfo/FD says."""
        shared = self._same_open_file(pid, fd)
        if shared is not None:
            return shared, self.entries[shared - 1].type
        open_fd = OpenFd.read(pid, fd, fdinfo)
        kind = KINDS.recognise(open_fd)
        file_id = kind.dump(self, open_fd)
        self._open.append((pid, fd, file_id))
        return file_id, kind.fd_type

    def _same_open_file(self, pid, fd):
        for other_pid, other_fd, file_id in self._open:
            try:
                if kcmp(pid, other_pid, KCMP_FILE, fd, other_fd) == 0:
                    return file_id
            except OSError:
                continue
        return None

    def finish(self):
        """Once every process is collected: what a kind can only check
        knowing the whole tree (a state's ``finish()``: a socket's peer is
        held by the tree) refuses the dump here, before anything is written."""
        for state in self._states.values():
            finish = getattr(state, "finish", None)
            if finish is not None:
                finish()

    def release(self, failed):
        """What the kinds hold until the dump ends; a failed dump's undoing."""
        for state in self._states.values():
            close = getattr(state, "close", None)
            if close is not None:
                close(failed)

    def write_images(self, images):
        images.write("FILES", None, self.entries)
        for state in self._states.values():
            write = getattr(state, "write_images", None)
            if write is not None:
                write(images)


def dump_fds(pid, table):
    """fdinfo entries of one process, ascending fd."""
    out = []
    for fd in proc.fds(pid):
        fdinfo = proc.fdinfo(pid, fd)
        file_id, fd_type = table.describe_fd(pid, fd, fdinfo)
        fd_flags = 1 if int(fdinfo["flags"], 8) & O_CLOEXEC else 0
        out.append(classes["fdinfo_entry"](id=file_id, flags=fd_flags, type=fd_type, fd=fd))
    return out
