"""Entering a namespace for a moment, and making a new one.

Namespaces belong to threads (nsproxy): hiber's calling thread joins the
tree's namespace, does its work there (uname, SysV IPC calls, /proc/sys
files all act on the caller's namespaces), and goes back.  A namespace made
by unshare() lives on after hiber leaves it as long as a descriptor of it is
open (namespaces(7)); processes forked while hiber is inside are born in it."""

import contextlib
import json
import os

from ...kernel import sys

CLONE_NEWTIME = 0x00000080
CLONE_FLAGS = {"uts": 0x04000000, "ipc": 0x08000000, "net": 0x40000000,
               "cgroup": sys.CLONE_NEWCGROUP, "time": CLONE_NEWTIME}


def _own(kind):
    return os.open(f"/proc/thread-self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def inside(kind, ns_fd):
    """The calling thread in the namespace ns_fd refers to, then back."""
    own = _own(kind)
    try:
        sys.setns(ns_fd, CLONE_FLAGS[kind])
        try:
            yield
        finally:
            sys.setns(own, CLONE_FLAGS[kind])
    finally:
        os.close(own)


@contextlib.contextmanager
def inside_of(kind, pid):
    """The calling thread in pid's namespace of this kind, then back."""
    fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with inside(kind, fd):
            yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def fresh(kind):
    """A new namespace of this kind, with the calling thread in it until the
    block ends; yields a descriptor that keeps it alive (the caller's to
    close), and closes it if the block fails."""
    own = _own(kind)
    try:
        sys.unshare(CLONE_FLAGS[kind])
        try:
            made = _own(kind)
            try:
                yield made
            except BaseException:
                os.close(made)
                raise
        finally:
            sys.setns(own, CLONE_FLAGS[kind])
    finally:
        os.close(own)


def same_as_hiber(kind, pid):
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino


def seen_from(kind, pid, work):
    """work() run by a helper process in pid's namespace of this kind, for
    what only a member sees (its clocks, its cgroup paths), where hiber
    itself may not or should not go (a time namespace can only be entered
    by a single-threaded process, and changes its clocks); work's result
    travels back as JSON."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            with open(f"/proc/{pid}/ns/{kind}") as ns:
                sys.setns(ns.fileno(), CLONE_FLAGS[kind])
            sys.write_all(write_end, json.dumps(work()).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write_end)
    try:
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
    finally:
        os.close(read_end)
        _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError(f"cannot look from inside the {kind} namespace of PID {pid}")
    return json.loads(data)
