"""sock_diag(7): what the kernel tells of a socket, asked by its inode
number over a NETLINK_SOCK_DIAG socket.

For a unix socket (net/unix/diag.c) the answer names its type and state,
its peer's inode, its bound name, its pending connections, how much its
queues hold and how it was shut down: what /proc and getsockopt() cannot
tell from outside (a socket's peer above all). The kernel looks the
inode up in the network namespace of the asking socket, which is hiber's.
"""

import errno
import os
import socket
import struct
from dataclasses import dataclass

from . import netlink

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
# struct nlmsghdr and nlattr, and the flags and types every netlink user shares
from .netlink import NLA_HEADER, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, \
    NLMSG_HEADER  # noqa: E402,F401
UNIX_DIAG_REQ = struct.Struct("=BBHIII8s")  # family, protocol, pad, states, ino, show, cookie
UNIX_DIAG_MSG = struct.Struct("=BBBBI8s")   # family, type, state, pad, ino, cookie
# "no cookie": the kernel then finds the socket by its inode alone
# (sock_diag_check_cookie accepts INET_DIAG_NOCOOKIE)
NO_COOKIE = b"\xff" * 8
ALL_STATES = 0xffffffff

UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER = 0x1, 0x2, 0x4
UDIAG_SHOW_ICONS, UDIAG_SHOW_RQLEN = 0x8, 0x10
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_MEMINFO, UNIX_DIAG_SHUTDOWN = 4, 5, 6

# sk_shutdown bits, as UNIX_DIAG_SHUTDOWN reports them (include/net/sock.h)
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
# the TCP states unix sockets borrow (include/net/tcp_states.h)
TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10


@dataclass(frozen=True)
class UnixSocket:
    """One unix socket as unix_diag describes it."""
    ino: int
    type: int               # SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    state: int              # TCP_ESTABLISHED, TCP_CLOSE or TCP_LISTEN
    peer: int               # the peer's inode; 0: none (or it was closed)
    name: bytes             # the bound address; b"" when unbound, starts with
                            # NUL for an abstract one
    vfs: tuple | None       # (inode, device) of a bound file, when there is one
    pending: tuple          # inodes of connections not yet accepted (listeners)
    rqueue: int             # listeners: connections waiting; others: bytes
                            # queued to read (datagrams: the first one's size)
    wqueue: int             # listeners: the backlog; others: bytes sent by it
                            # not yet read by the peer
    shutdown: int           # RCV_SHUTDOWN | SEND_SHUTDOWN bits


_attributes = netlink.attributes


def _parse_unix(payload):
    _, sock_type, state, _, ino, _ = UNIX_DIAG_MSG.unpack_from(payload)
    attrs = _attributes(payload[UNIX_DIAG_MSG.size:])
    vfs = struct.unpack("=II", attrs[UNIX_DIAG_VFS]) if UNIX_DIAG_VFS in attrs else None
    icons = attrs.get(UNIX_DIAG_ICONS, b"")
    rq, wq = struct.unpack("=II", attrs[UNIX_DIAG_RQLEN]) if UNIX_DIAG_RQLEN in attrs \
        else (0, 0)
    return UnixSocket(
        ino=ino, type=sock_type, state=state,
        peer=struct.unpack("=I", attrs[UNIX_DIAG_PEER])[0] if UNIX_DIAG_PEER in attrs else 0,
        name=attrs.get(UNIX_DIAG_NAME, b""),
        vfs=(vfs[0], vfs[1]) if vfs else None,
        pending=struct.unpack(f"={len(icons) // 4}I", icons),
        rqueue=rq, wqueue=wq,
        shutdown=attrs[UNIX_DIAG_SHUTDOWN][0] if UNIX_DIAG_SHUTDOWN in attrs else 0)


def unix_socket(ino):
    """The unix socket with inode ``ino`` in hiber's network namespace, or
    None when there is none there."""
    show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | \
        UDIAG_SHOW_RQLEN
    request = UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, ALL_STATES, ino, show, NO_COOKIE)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_SOCK_DIAG) as nl:
        nl.sendto(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                    NLM_F_REQUEST, 1, 0) + request, (0, 0))
        reply = nl.recv(1 << 16)
    offset = 0
    while offset + NLMSG_HEADER.size <= len(reply):
        length, kind, _, _, _ = NLMSG_HEADER.unpack_from(reply, offset)
        payload = reply[offset + NLMSG_HEADER.size:offset + length]
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", payload)[0]
            if code == errno.ENOENT:
                return None
            raise OSError(code, f"sock_diag of unix socket {ino}: {os.strerror(code)}")
        if kind == SOCK_DIAG_BY_FAMILY:
            found = _parse_unix(payload)
            if found.ino == ino:
                return found
        if kind == NLMSG_DONE or length < NLMSG_HEADER.size:
            break
        offset += (length + 3) & ~3
    return None


def unix_diag_works():
    """Whether this kernel answers unix_diag (CONFIG_UNIX_DIAG): asked about
    a socket of hiber's own. Without it every socket looks unknown."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        found = unix_socket(os.fstat(ours.fileno()).st_ino)
        return found is not None and found.peer == os.fstat(theirs.fileno()).st_ino
    finally:
        ours.close()
        theirs.close()


def unix_bound_files():
    """(inode, device) of the file of every unix socket bound to a path in
    hiber's network namespace, the device as the kernel keeps it (s_dev:
    major << 20 | minor, not stat()'s encoding)."""
    request = UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, ALL_STATES, 0, UDIAG_SHOW_VFS,
                                 NO_COOKIE)
    found = set()
    for payload in netlink.dump(NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, request,
                                SOCK_DIAG_BY_FAMILY, "sock_diag of every unix socket"):
        attrs = _attributes(payload[UNIX_DIAG_MSG.size:])
        if UNIX_DIAG_VFS in attrs:
            found.add(struct.unpack("=II", attrs[UNIX_DIAG_VFS]))
    return found
