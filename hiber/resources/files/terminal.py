"""Terminals, as a shell job has them (criu --shell-job).

A job started from a shell has its stdio on the shell's terminal. hiber
dumps such an fd, only when asked with --shell-job, as a REG entry naming
the terminal device (CRIU's own TTY entries are not written yet); a
restore opens the terminal hiber itself runs on in its place, as criu -j
gives the job the terminal of the restoring shell.
"""

import os
import stat as st

from . import regular
from .common import UnsupportedFile
from .table import FD_TYPES, Kind

# 4: virtual consoles and ttyS, 5: /dev/tty and ptmx, 136-143: /dev/pts/*
# (Documentation/admin-guide/devices.txt)
TTY_MAJORS = (4, 5, *range(136, 144))


def is_tty(info):
    return os.major(info.st_rdev) in TTY_MAJORS


def is_terminal_fd(fd):
    return st.S_ISCHR(fd.info.st_mode) and is_tty(fd.info)


def is_terminal_path(path):
    try:
        info = os.stat(path)
    except OSError:
        return path.startswith(("/dev/pts/", "/dev/tty"))
    return st.S_ISCHR(info.st_mode) and is_tty(info)


def dump_fd(table, fd):
    if not table.shell_job:
        raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is a terminal ({fd.link}): run the "
                              "dump with --shell-job (-j) to dump it as a shell job")
    return regular.dump_open_file(table, fd)


def open_entry(stub, entry):
    # a shell job gets the terminal hiber runs on, as criu --shell-job does
    return regular.open_file(entry.reg, stub.floor, name=stub.shell_tty)


KIND = Kind(name="terminal", fd_type=FD_TYPES["REG"], entry_field="reg",
            match=is_terminal_fd, dump=dump_fd, check=regular.check, open=open_entry,
            label=lambda entry: entry.reg.name,
            owns=lambda entry: is_terminal_path(entry.reg.name))
