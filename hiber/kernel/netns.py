"""Running a call in another network namespace: setns(2) changes the
namespace of the calling thread only, so the call runs in a thread of its
own, which joins the namespace and ends (hiber's other threads stay where
they are). Sockets made there (a sock_diag or nftables netlink socket)
belong to that namespace for good."""

import fcntl
import os
import threading

from .sys import libc

CLONE_NEWNET = 0x40000000
SIOCGSKNS = 0x894C  # a socket's network namespace, as a new fd (Linux 4.9)


def of_socket(sock_fd):
    """An fd of the network namespace a socket belongs to (close it)."""
    return fcntl.ioctl(sock_fd, SIOCGSKNS)


def is_ours(netns_fd):
    return os.fstat(netns_fd).st_ino == os.stat("/proc/self/ns/net").st_ino


def call_in(netns_fd, fn, *args):
    """fn(*args) run in the network namespace of ``netns_fd``; its result,
    or its exception raised here."""
    if is_ours(netns_fd):
        return fn(*args)
    outcome = {}

    def run():
        try:
            if libc.setns(netns_fd, CLONE_NEWNET) != 0:
                import ctypes
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            outcome["result"] = fn(*args)
        except BaseException as e:  # noqa: B036 - carried over to the caller
            outcome["error"] = e

    thread = threading.Thread(target=run, name="netns")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
