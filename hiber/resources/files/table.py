"""The table of open-file kinds.

Each kind of open file (regular file, pipe, FIFO, memfd, terminal, ...) is
one module that tells its whole story in one ``Kind``: how to recognise it
among a process's fds, what to write for it, what to check before a
restore, how to open it again, and how ``hiber show`` names it. The kinds
are registered, in the order they are tried, in kinds.py; dump, restore,
the pre-restore checks and ``hiber show`` ask the table and never name a
kind themselves (CRIU's fdtype_ops and file_desc_ops, as one record).

A fd or a file entry no kind claims meets ``UNSUPPORTED``, which refuses
it naming its kind in words.
"""

import os
from dataclasses import dataclass
from typing import Callable

from ...images.messages import classes
from ...kernel import proc
from .common import UnsupportedFile, borrow_fd
from .owners import owner_of

FileEntry = classes["file_entry"]
# fd_types of the schema: file_entry.type and fdinfo_entry.type
FD_TYPES = {v.name: v.number
            for v in FileEntry.DESCRIPTOR.fields_by_name["type"].enum_type.values}
FD_TYPE_NAMES = {number: name for name, number in FD_TYPES.items()}
# what each fd_type is, for messages and `hiber show`
FD_TYPE_WORDS = {"REG": "regular file", "PIPE": "pipe", "FIFO": "FIFO",
                 "INETSK": "inet socket", "UNIXSK": "unix socket", "EVENTFD": "eventfd",
                 "EVENTPOLL": "epoll instance", "INOTIFY": "inotify instance",
                 "SIGNALFD": "signalfd", "PACKETSK": "packet socket", "TTY": "terminal",
                 "FANOTIFY": "fanotify instance", "NETLINKSK": "netlink socket",
                 "NS": "namespace file", "TUNF": "tun device", "EXT": "external file",
                 "TIMERFD": "timerfd", "MEMFD": "memfd", "BPFMAP": "BPF map",
                 "PIDFD": "pidfd", "CTTY": "controlling terminal",
                 "AUTOFS_PIPE": "autofs pipe"}


@dataclass(frozen=True)
class OpenFd:
    """What dump knows of one fd of a frozen process before naming its kind."""
    pid: int
    fd: int
    link: str                # readlink(/proc/PID/fd/N): "pipe:[123]", "/etc/passwd", ...
    flags: int               # fdinfo's flags: the open flags, O_CLOEXEC included
    pos: int
    info: os.stat_result     # stat() through the fd
    fdinfo: dict             # /proc/PID/fdinfo/FD: what each kind adds there
                             # (eventfd-count, tfd, inotify wd, ...)

    @classmethod
    def read(cls, pid, fd, fdinfo):
        """``fdinfo`` is what /proc/PID/fdinfo/FD says."""
        link = proc.fd_link(pid, fd)
        flags = int(fdinfo["flags"], 8)
        pos = int(fdinfo["pos"])
        try:
            info = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError as e:
            raise UnsupportedFile(f"PID {pid} fd {fd} ({link}): cannot stat: "
                                  f"{e.strerror}") from None
        return cls(pid, fd, link, flags, pos, info, fdinfo)

    @property
    def path(self):
        """Opening this path opens the same file (a new open file of it)."""
        return f"/proc/{self.pid}/fd/{self.fd}"

    def owner(self):
        """Its fown_entry (F_SETOWN/F_SETSIG)."""
        with borrow_fd(self.pid, self.fd) as ours:
            return owner_of(ours)


def _always(entry):
    return True


@dataclass(frozen=True)
class Kind:
    """One kind of open file, its whole story.

    match(fd: OpenFd) -> bool            is this fd of the kind? (tried in table order)
    dump(table: FileTable, fd) -> id     add its file entry (and any data of its own)
    check(files: FileImages, entry)      before restoring: raise, in one line, what
                                         would make restoring it wrong
    open(stub: StubFiles, entry) -> fd   inside the root stub: a new open file, at a
                                         number >= stub.floor
    label(entry) -> str                  how `hiber show` names it
    """
    name: str                # in words: "regular file", "pipe"
    fd_type: int             # the fd_types value of its file and fdinfo entries
    entry_field: str         # the file_entry field holding its message; "": a kind
                             # that only recognises fds, to refuse them
    match: Callable
    dump: Callable
    check: Callable
    open: Callable
    label: Callable
    # among kinds sharing an entry field, whether this entry is this kind's
    owns: Callable = _always
    # (stub, entry, open mode) -> fd to mmap a file-backed VMA from; None:
    # this kind cannot be mapped
    map_fd: Callable = None
    # (ImageDir) -> data: the images the kind writes beside files.img (pipe
    # data ...), read back before a restore creates anything
    read_images: Callable = None
    # (stub, entry, fd, {fd number: file id}) once every fd of the process is
    # at its number: what needs those numbers (an epoll's watches)
    install: Callable = None


class KindStates:
    """What each kind keeps beside its file entries (the data queued in
    pipes, the ends of a pipe being opened, ...) for the time of one dump
    (FileTable) or of one stub's opening of its files (StubFiles)."""

    def __init__(self):
        self._states = {}  # kind name -> what that kind keeps

    def state(self, kind, make):
        """The state of ``kind``, made by ``make()`` the first time."""
        if kind.name not in self._states:
            self._states[kind.name] = make()
        return self._states[kind.name]


class Table:
    """The kinds, in the order their ``match`` is tried."""

    def __init__(self, *kinds):
        self.kinds = kinds

    def recognise(self, fd):
        """The kind of an fd of a frozen process."""
        return next((k for k in self.kinds if k.match(fd)), UNSUPPORTED)

    def of_entry(self, entry):
        """The kind of a file_entry of the images."""
        # a kind without an entry field only recognises fds, to refuse them
        return next((k for k in self.kinds if k.entry_field
                     and entry.HasField(k.entry_field) and k.owns(entry)), UNSUPPORTED)

    def label(self, entry):
        return self.of_entry(entry).label(entry)


# ---- what no kind claims -------------------------------------------------------

def _with_article(words):
    return ("an " if words[:1].lower() in "aeiou" else "a ") + words


def fd_in_words(link):
    """What an fd's link says it is: "socket" for socket:[123], "eventfd"
    for anon_inode:[eventfd]."""
    what = link.split(":")[0] if ":" in link else link
    if what == "anon_inode":
        what = link[len("anon_inode:"):].strip("[]") or what
    return what


def entry_in_words(entry):
    name = FD_TYPE_NAMES.get(entry.type)
    return FD_TYPE_WORDS.get(name, f"file of unknown type {entry.type}")


def _refuse_fd(table, fd):
    raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is {_with_article(fd_in_words(fd.link))} "
                          f"({fd.link}): hiber cannot dump this kind of file yet")


def _refuse_entry(context, entry):
    raise UnsupportedFile(f"file #{entry.id} is {_with_article(entry_in_words(entry))}, "
                          "which hiber cannot restore yet")


UNSUPPORTED = Kind(
    name="unsupported", fd_type=FD_TYPES["UND"], entry_field="",
    match=_always, dump=_refuse_fd, check=_refuse_entry, open=_refuse_entry,
    label=lambda entry: f"{entry_in_words(entry)} #{entry.id}")


def nothing_to_check(files, entry):
    """For kinds whose restore needs nothing that could have changed since."""
