"""sock_diag(7) dumps of the families that cannot be asked about one
socket by inode (net/netlink/diag.c, net/packet/diag.c answer only
NLM_F_DUMP requests): every socket of the family in hiber's network
namespace, by inode, with what the dump asked to be shown."""

import socket
import struct
from dataclasses import dataclass

from . import netlink
from .sock_diag import NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, _attributes

# include/uapi/linux/netlink_diag.h
NETLINK_DIAG_REQ = struct.Struct("=BBHII8s")   # family, protocol, pad, ino, show, cookie
NETLINK_DIAG_MSG = struct.Struct("=BBBBIIII8s")  # family, type, protocol, state, portid,
                                                 # dst_portid, dst_group, ino, cookie
NDIAG_PROTO_ALL = 255
NDIAG_SHOW_GROUPS, NDIAG_SHOW_FLAGS = 0x2, 0x8
NETLINK_DIAG_GROUPS, NETLINK_DIAG_FLAGS = 1, 4

# include/uapi/linux/packet_diag.h
PACKET_DIAG_REQ = struct.Struct("=BBHII8s")    # family, protocol, pad, ino, show, cookie
PACKET_DIAG_MSG = struct.Struct("=BBHI8s")     # family, type, num (protocol), ino, cookie
PACKET_SHOW_INFO, PACKET_SHOW_MCLIST, PACKET_SHOW_RING_CFG = 0x1, 0x2, 0x4
PACKET_SHOW_FANOUT = 0x8
PACKET_DIAG_INFO, PACKET_DIAG_MCLIST, PACKET_DIAG_RX_RING = 0, 1, 2
PACKET_DIAG_TX_RING, PACKET_DIAG_FANOUT = 3, 4
PACKET_DIAG_INFO_S = struct.Struct("=6I")      # index, version, reserve, copy_thresh,
                                               # tstamp, flags
PACKET_DIAG_MCLIST_S = struct.Struct("=IIHH32s")  # index, count, type, alen, addr
PACKET_DIAG_RING_S = struct.Struct("=7I")      # block size/nr, frame size/nr, retire
                                               # tmo, sizeof priv, features


def _dump(family, request):
    """Every SOCK_DIAG_BY_FAMILY payload the kernel answers a dump with."""
    return netlink.dump(NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, request, SOCK_DIAG_BY_FAMILY,
                        f"sock_diag of family {family}")


@dataclass(frozen=True)
class NetlinkSocket:
    ino: int
    protocol: int
    state: int           # 0 unconnected, 1 connected (NETLINK_CONNECTED)
    portid: int
    dst_portid: int
    dst_group: int
    groups: tuple        # the membership bitmap, in 32-bit words
    flags: int           # NDIAG_FLAG_*: PKTINFO, BROADCAST_ERROR, NO_ENOBUFS ...


def netlink_sockets():
    """inode -> NetlinkSocket of every netlink socket of hiber's netns."""
    request = NETLINK_DIAG_REQ.pack(socket.AF_NETLINK, NDIAG_PROTO_ALL, 0, 0,
                                    NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS, b"\xff" * 8)
    out = {}
    for payload in _dump(socket.AF_NETLINK, request):
        _, _, protocol, state, portid, dst_portid, dst_group, ino, _ = \
            NETLINK_DIAG_MSG.unpack_from(payload)
        attrs = _attributes(payload[NETLINK_DIAG_MSG.size:])
        raw = attrs.get(NETLINK_DIAG_GROUPS, b"")
        groups = struct.unpack(f"={len(raw) // 4}I", raw[:len(raw) // 4 * 4])
        flags = struct.unpack("=I", attrs[NETLINK_DIAG_FLAGS])[0] \
            if NETLINK_DIAG_FLAGS in attrs else 0
        out[ino] = NetlinkSocket(ino, protocol, state, portid, dst_portid, dst_group,
                                 groups, flags)
    return out


@dataclass(frozen=True)
class PacketSocket:
    ino: int
    type: int
    protocol: int        # in network byte order, as socket(2) takes it
    info: tuple          # index, version, reserve, copy_thresh, tstamp, flags
    mclist: tuple        # (ifindex, count, type, address) of each membership
    rx_ring: tuple       # PACKET_DIAG_RING_S fields, or None
    tx_ring: tuple
    fanout: int          # None: no fanout group


def packet_sockets():
    """inode -> PacketSocket of every packet socket of hiber's netns."""
    show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT
    request = PACKET_DIAG_REQ.pack(socket.AF_PACKET, 0, 0, 0, show, b"\xff" * 8)
    out = {}
    for payload in _dump(socket.AF_PACKET, request):
        _, sock_type, num, ino, _ = PACKET_DIAG_MSG.unpack_from(payload)
        attrs = _attributes(payload[PACKET_DIAG_MSG.size:])
        raw = attrs.get(PACKET_DIAG_MCLIST, b"")
        mclist = []
        for off in range(0, len(raw) - PACKET_DIAG_MCLIST_S.size + 1,
                         PACKET_DIAG_MCLIST_S.size):
            index, count, mtype, alen, addr = PACKET_DIAG_MCLIST_S.unpack_from(raw, off)
            mclist.append((index, count, mtype, addr[:alen]))

        def ring(kind):
            return PACKET_DIAG_RING_S.unpack(attrs[kind]) if kind in attrs else None
        out[ino] = PacketSocket(
            ino=ino, type=sock_type, protocol=socket.htons(num),
            info=PACKET_DIAG_INFO_S.unpack(attrs[PACKET_DIAG_INFO]),
            mclist=tuple(mclist), rx_ring=ring(PACKET_DIAG_RX_RING),
            tx_ring=ring(PACKET_DIAG_TX_RING),
            fanout=struct.unpack("=I", attrs[PACKET_DIAG_FANOUT])[0]
            if PACKET_DIAG_FANOUT in attrs else None)
    return out
