"""Netlink sockets (NETLINK_ROUTE, KOBJECT_UEVENT, ...), as CRIU 4.2 keeps
them in a NETLINKSK file entry (netlink_sk_entry): protocol, port id (the
bound address), multicast group memberships, the address it is connected
to, open flags, owner and socket options.

What sock_diag tells (net/netlink/diag.c) is read for every netlink socket
of hiber's network namespace at once, as that family answers only dumps.
A socket comes back bound to its port id and groups and connected as it
was. As with criu, the messages waiting in it are not kept (the kernel's
answers and events are not the process's data: its peer sends them again
or they are lost as on an overrun).
"""

import socket
import struct

from ...images.messages import classes
from ...kernel import diag_dump
from ..files.common import O_CLOEXEC, UnsupportedFile, high_dup, set_status_flags
from ..files.table import FD_TYPES, Kind
from .common import family_of, is_socket, socket_of
from .options import check_options, dump_options, restore_options

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_LIST_MEMBERSHIPS = 1, 9
NETLINK_CONNECTED = 1  # net/netlink/af_netlink.h: sk_state of a connected socket


def is_netlink_socket(fd):
    return is_socket(fd) and family_of(fd) == socket.AF_NETLINK


def dump_fd(table, fd):
    where = f"PID {fd.pid} fd {fd.fd} ({fd.link})"
    known = table.state(KIND, dict)
    if not known:
        known.update(diag_dump.netlink_sockets())
    me = known.get(fd.info.st_ino)
    with socket_of(fd) as sock:
        opts = dump_options(sock, where)
        if me is None:
            me = _unbound(sock, fd, where)
    groups = list(me.groups)
    while groups and not groups[-1]:
        groups.pop()
    entry = classes["netlink_sk_entry"](
        id=0, ino=me.ino, protocol=me.protocol, state=me.state,
        flags=fd.flags & ~O_CLOEXEC, portid=me.portid, groups=groups,
        dst_portid=me.dst_portid, dst_group=me.dst_group, fown=fd.owner(), opts=opts)
    if table.net_ns_id:
        entry.ns_id = table.net_ns_id
    return table.add(KIND, entry)


def _unbound(sock, fd, where):
    """netlink_diag lists only bound sockets (those in the port table): one
    it does not list is unbound, with at most group memberships, which
    NETLINK_LIST_MEMBERSHIPS tells (as criu does for it)."""
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) != socket.AF_NETLINK:
        raise UnsupportedFile(f"{where}: not a netlink socket")
    raw = sock.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 128)
    groups = struct.unpack(f"={len(raw) // 4}I", raw)
    name = sock.getsockname()
    if name[0]:
        raise UnsupportedFile(f"{where} is a bound netlink socket sock_diag does not describe "
                              "(another network namespace?): hiber cannot dump it")
    return diag_dump.NetlinkSocket(ino=fd.info.st_ino, protocol=sock.proto, state=0,
                                   portid=0, dst_portid=0, dst_group=0, groups=groups,
                                   flags=0)


def _where(entry):
    return f"file #{entry.id} (netlink socket:[{entry.nlsk.ino}])"


def check(files, entry):
    check_options(entry.nlsk.opts, _where(entry))


def open_socket(stub, entry):
    nl = entry.nlsk
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.protocol)
    try:
        groups = list(nl.groups)
        if nl.portid:
            # the first 32 groups go with the address, the others one by one
            sock.bind((nl.portid, groups[0] if groups else 0))
            groups[:1] = [0]
        for word, bits in enumerate(groups):
            for bit in range(32):
                if bits >> bit & 1:
                    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, word * 32 + bit + 1)
        if nl.state == NETLINK_CONNECTED:
            # dst_group is a group's number (ffs of the address's groups)
            sock.connect((nl.dst_portid, 1 << (nl.dst_group - 1) if nl.dst_group else 0))
        restore_options(sock, nl.opts)
        fd = high_dup(sock.detach(), stub.floor)
    finally:
        sock.close()
    set_status_flags(fd, nl.flags)
    return fd


def label(entry):
    nl = entry.nlsk
    return f"netlink socket:[{nl.ino}] (protocol {nl.protocol}, port {nl.portid})"


KIND = Kind(name="netlink socket", fd_type=FD_TYPES["NETLINKSK"], entry_field="nlsk",
            match=is_netlink_socket, dump=dump_fd, check=check, open=open_socket,
            label=label)
