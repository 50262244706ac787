"""What the kinds of socket share: recognising a socket fd, looking at it
from hiber, naming it in words."""

import contextlib
import os
import socket

from ..files.common import borrow_fd

FAMILY_WORDS = {socket.AF_UNIX: "unix", socket.AF_INET: "inet", socket.AF_INET6: "inet6",
                socket.AF_NETLINK: "netlink", socket.AF_PACKET: "packet"}
TYPE_WORDS = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "datagram",
              socket.SOCK_SEQPACKET: "seqpacket", socket.SOCK_RAW: "raw"}


def is_socket(fd):
    return fd.link.startswith("socket:[")


@contextlib.contextmanager
def socket_of(fd):
    """A socket object of hiber's on a frozen process's socket (the same
    socket: what is set on it, the process sees) for the time of a with
    block."""
    with borrow_fd(fd.pid, fd.fd) as ours:
        sock = socket.socket(fileno=os.dup(ours))  # it reads family and type itself
        try:
            yield sock
        finally:
            sock.close()


def family_of(fd):
    """The address family of a socket fd of a frozen process."""
    with socket_of(fd) as sock:
        return sock.family


def type_in_words(sock_type):
    return TYPE_WORDS.get(sock_type, f"type {sock_type}")


def family_in_words(family):
    return FAMILY_WORDS.get(family, f"family {int(family)}")
