"""rtnetlink, for what a network namespace holds: its links (RTM_GETLINK).
The socket belongs to the namespace of the thread that made it."""

import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_INFO_KIND = 18, 1
IFLA_LINK_NETNSID = 37

_NLMSG = struct.Struct("=IHHII")      # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")    # family, type, index, flags, change
_RTA = struct.Struct("=HH")


def _attributes(data):
    out = {}
    offset = 0
    while offset + _RTA.size <= len(data):
        length, kind = _RTA.unpack_from(data, offset)
        if length < _RTA.size:
            break
        out[kind & 0x7fff] = data[offset + _RTA.size:offset + length]
        offset += (length + 3) & ~3
    return out


def links():
    """[{index, name, flags, mtu, address, kind, link, master, link_netnsid}]
    of the calling thread's network namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_ROUTE) as s:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        s.send(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                           1, 0) + body)
        found = []
        while True:
            data = s.recv(1 << 16)
            offset = 0
            while offset < len(data):
                length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", data, offset + _NLMSG.size)[0]
                    raise OSError(errno, "RTM_GETLINK failed")
                if kind == RTM_NEWLINK:
                    found.append(_link(data[offset + _NLMSG.size:offset + length]))
                offset += (length + 3) & ~3


def _link(data):
    _, _, index, flags, _ = _IFINFO.unpack_from(data, 0)
    attrs = _attributes(data[_IFINFO.size:])
    info = _attributes(attrs.get(IFLA_LINKINFO, b""))

    def number(key):
        return struct.unpack("=I", attrs[key])[0] if key in attrs else None
    return {"index": index, "flags": flags,
            "name": attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
            "mtu": number(IFLA_MTU), "address": attrs.get(IFLA_ADDRESS),
            "kind": info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode() or None,
            "link": number(IFLA_LINK), "master": number(IFLA_MASTER),
            "link_netnsid": number(IFLA_LINK_NETNSID)}
