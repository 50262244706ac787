"""rtnetlink, for what a network namespace holds: its links (RTM_GETLINK).
The socket belongs to the namespace of the thread that made it."""

import socket
import struct

from . import netlink

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_INFO_KIND = 18, 1
IFLA_LINK_NETNSID = 37

_IFINFO = struct.Struct("=BxHiII")    # family, type, index, flags, change


def links():
    """[{index, name, flags, mtu, address, kind, link, master, link_netnsid}]
    of the calling thread's network namespace."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return [_link(payload) for payload in netlink.dump(NETLINK_ROUTE, RTM_GETLINK, body,
                                                       RTM_NEWLINK, "RTM_GETLINK")]


def _link(data):
    _, _, index, flags, _ = _IFINFO.unpack_from(data, 0)
    attrs = netlink.attributes(data[_IFINFO.size:])
    info = netlink.attributes(attrs.get(IFLA_LINKINFO, b""))

    def number(key):
        return struct.unpack("=I", attrs[key])[0] if key in attrs else None
    return {"index": index, "flags": flags,
            "name": attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
            "mtu": number(IFLA_MTU), "address": attrs.get(IFLA_ADDRESS),
            "kind": info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode() or None,
            "link": number(IFLA_LINK), "master": number(IFLA_MASTER),
            "link_netnsid": number(IFLA_LINK_NETNSID)}
