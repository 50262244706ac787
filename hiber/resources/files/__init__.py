"""Open files: files.img (every open-file object), fdinfo-N.img (each fd
table), and the images some kinds keep beside them (pipes-data.img,
fifo-data.img, memfd.img).

    table.py      Kind: one kind of open file, its whole story; the fallback
                  that refuses what no kind claims
    kinds.py      the registration of every kind, in the order they are tried
    regular.py    regular files, directories, devices (REG entries)
    terminal.py   terminals: pty pairs, /dev/tty, console, vt (TTY entries)
    pipe.py       pipes and their queued data
    fifo.py       named pipes and their queued data
    memfd.py      memfds and shared anonymous memory (both halves)
    eventfd.py, signalfd.py, timerfd.py
                  event counters, signal and timer fds
    epoll.py      epoll instances and their watches
    (sockets)     the socket kinds are in resources/sockets/, registered here
    dumping.py    FileTable: files.img and fdinfo entries of a dump
    restoring.py  FileImages (read and check), StubFiles (open in the stub)
    owners.py     the owner and signal of an open file (F_SETOWN, F_SETSIG)
    common.py     flags, fd helpers the kinds share
"""

from .common import UnsupportedFile, high_dup  # noqa: F401
from .dumping import FileTable, dump_fds  # noqa: F401
from .kinds import KINDS  # noqa: F401
from .restoring import FileImages, StubFiles  # noqa: F401
