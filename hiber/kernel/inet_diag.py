"""sock_diag(7) for inet sockets (net/ipv4/inet_diag.c): every TCP, UDP,
UDP-Lite or raw socket of one family in hiber's network namespace, by
inode, with its state, queue lengths, addresses and shutdown bits.

inet_diag answers a request for one socket only when given its whole
address (ports and addresses), which dump does not know before asking: it
asks for them all, once per family and protocol."""

import socket
import struct
from dataclasses import dataclass

from .diag_dump import _dump
from .sock_diag import _attributes

# include/uapi/linux/inet_diag.h
SOCKID = "HH16s16sI8s"   # sport, dport (big-endian), src, dst, ifindex, cookie
INET_DIAG_REQ_V2 = struct.Struct("=BBBBI" + SOCKID)  # family, protocol, ext, pad (raw
                                                     # sockets: their protocol), states
INET_DIAG_MSG = struct.Struct("=BBBB" + SOCKID + "IIIII")  # family, state, timer,
                                                           # retrans, id, expires, rqueue,
                                                           # wqueue, uid, inode
INET_DIAG_SHUTDOWN = 8
ALL_STATES = 0xffffffff
IPPROTO_UDPLITE = 136


@dataclass(frozen=True)
class InetSocket:
    ino: int
    family: int
    state: int           # TCP_* (UDP: ESTABLISHED when connected, else CLOSE)
    src_port: int
    dst_port: int
    src: bytes           # 4 or 16 bytes, network order
    dst: bytes
    rqueue: int          # TCP: bytes unread, or a listener's connections waiting
    wqueue: int          # TCP: bytes unacknowledged, or a listener's backlog
    shutdown: int        # RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2


def inet_sockets(family, protocol, raw_protocol=0):
    """inode -> InetSocket of every socket of ``family`` and ``protocol``
    (IPPROTO_RAW with ``raw_protocol`` for raw sockets). An empty answer
    where the kernel has no diag module for the protocol."""
    request = INET_DIAG_REQ_V2.pack(family, protocol, 0, raw_protocol, ALL_STATES,
                                    0, 0, b"", b"", 0, b"\xff" * 8)
    try:
        payloads = _dump(family, request)
    except OSError:
        return {}
    size = 4 if family == socket.AF_INET else 16
    out = {}
    for payload in payloads:
        (fam, state, _, _, sport, dport, src, dst, _, _, _, rqueue, wqueue, _,
         ino) = INET_DIAG_MSG.unpack_from(payload)
        attrs = _attributes(payload[INET_DIAG_MSG.size:])
        shutdown = attrs[INET_DIAG_SHUTDOWN][0] if INET_DIAG_SHUTDOWN in attrs else 0
        out[ino] = InetSocket(ino, fam, state, socket.ntohs(sport), socket.ntohs(dport),
                              src[:size], dst[:size], rqueue, wqueue, shutdown)
    return out


def raw_diag_works():
    """Whether sock_diag describes raw sockets (CONFIG_INET_RAW_DIAG): a
    dump of them ends without an error code (ENOENT: no handler)."""
    from .sock_diag import NETLINK_SOCK_DIAG, NLM_F_REQUEST, NLMSG_DONE, NLMSG_HEADER, \
        SOCK_DIAG_BY_FAMILY
    for family in (socket.AF_INET, socket.AF_INET6):
        request = INET_DIAG_REQ_V2.pack(family, socket.IPPROTO_RAW, 0, socket.IPPROTO_RAW,
                                        ALL_STATES, 0, 0, b"", b"", 0, b"\xff" * 8)
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                           NETLINK_SOCK_DIAG) as nl:
            nl.sendto(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                        NLM_F_REQUEST | 0x300, 1, 0) + request, (0, 0))
            while True:
                reply = nl.recv(1 << 16)
                _, kind, _, _, _ = NLMSG_HEADER.unpack_from(reply)
                if kind == NLMSG_DONE or not reply:
                    error = struct.unpack_from("=i", reply, NLMSG_HEADER.size)[0] \
                        if len(reply) >= NLMSG_HEADER.size + 4 else 0
                    if error < 0:
                        return False
                    break
                if kind == 2:  # NLMSG_ERROR
                    return False
    return True
