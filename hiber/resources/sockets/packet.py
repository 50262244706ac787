"""Packet sockets (AF_PACKET: raw, datagram and the old SOCK_PACKET), as
CRIU 4.2 keeps them in a PACKETSK file entry (packet_sock_entry): type,
protocol, the interface it is bound to, its SOL_PACKET options (version,
reserve, aux data, original device, vnet header, loss, timestamp, copy
threshold), its multicast memberships, fanout group and the sizes of its
rx and tx rings.

sock_diag (net/packet/diag.c) tells all of it, for every packet socket
of hiber's network namespace at once. As with criu, the frames waiting in
a socket are not kept: a packet socket is a tap on the wire, which goes
on while the tree is stopped.
"""

import ctypes
import socket
import struct

from ...images.messages import classes
from ...kernel import diag_dump
from ...kernel.sys import libc
from ..files.common import O_CLOEXEC, UnsupportedFile, high_dup, set_status_flags
from ..files.table import FD_TYPES, Kind
from .common import family_of, is_socket, socket_of, type_in_words
from .options import check_options, dump_options, restore_options

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_RX_RING, PACKET_COPY_THRESH = 1, 5, 7
PACKET_AUXDATA, PACKET_ORIGDEV, PACKET_VERSION = 8, 9, 10
PACKET_RESERVE, PACKET_TX_RING, PACKET_LOSS, PACKET_VNET_HDR = 12, 13, 14, 15
PACKET_TIMESTAMP, PACKET_FANOUT = 17, 18
SOCK_PACKET = 10
# include/uapi/linux/packet_diag.h: pdi_flags
PDI_AUXDATA, PDI_ORIGDEV, PDI_VNETHDR, PDI_LOSS = 0x2, 0x4, 0x8, 0x10
NO_FANOUT = 0xffffffff
PACKET_MREQ = struct.Struct("=iHH8s")       # struct packet_mreq
TPACKET_REQ3 = struct.Struct("=7I")         # struct tpacket_req3 (a tpacket_req first)
SOCKADDR_LL = struct.Struct("=HHiHBB8s")    # struct sockaddr_ll


def is_packet_socket(fd):
    return is_socket(fd) and family_of(fd) == socket.AF_PACKET


def _ring(fields):
    if fields is None:
        return None
    names = ("block_size", "block_nr", "frame_size", "frame_nr", "retire_tmo",
             "sizeof_priv", "features")
    return classes["packet_ring"](**dict(zip(names, fields)))


def dump_fd(table, fd):
    where = f"PID {fd.pid} fd {fd.fd} ({fd.link})"
    known = table.state(KIND, dict)
    if not known:
        known.update(diag_dump.packet_sockets())
    me = known.get(fd.info.st_ino)
    if me is None:
        raise UnsupportedFile(f"{where} is a packet socket sock_diag does not describe "
                              "(another network namespace, or no CONFIG_PACKET_DIAG): "
                              "hiber cannot dump it")
    with socket_of(fd) as sock:
        opts = dump_options(sock, where)
    index, version, reserve, copy_thresh, tstamp, flags = me.info
    entry = classes["packet_sock_entry"](
        id=0, type=me.type, protocol=me.protocol, flags=fd.flags & ~O_CLOEXEC, ifindex=index,
        fown=fd.owner(), opts=opts, version=version, reserve=reserve,
        aux_data=bool(flags & PDI_AUXDATA), orig_dev=bool(flags & PDI_ORIGDEV),
        vnet_hdr=bool(flags & PDI_VNETHDR), loss=bool(flags & PDI_LOSS), timestamp=tstamp,
        copy_thresh=copy_thresh)
    for ifindex, _, mtype, addr in me.mclist:
        entry.mclist.add(index=ifindex, type=mtype, addr=addr)
    if me.fanout is not None and me.fanout != NO_FANOUT:
        entry.fanout = me.fanout
    for field, fields in (("rx_ring", me.rx_ring), ("tx_ring", me.tx_ring)):
        ring = _ring(fields)
        if ring is not None and ring.block_nr:
            getattr(entry, field).CopyFrom(ring)
    if table.net_ns_id:
        entry.ns_id = table.net_ns_id
    return table.add(KIND, entry)


def _where(entry):
    return f"file #{entry.id} (packet socket)"


def check(files, entry):
    psk = entry.psk
    check_options(psk.opts, _where(entry))
    for index in {psk.ifindex, *(m.index for m in psk.mclist)} - {0}:
        try:
            socket.if_indextoname(index)
        except OSError:
            raise UnsupportedFile(f"{_where(entry)} was bound to network interface {index}, "
                                  "which this machine does not have") from None


def _set(sock, option, value):
    sock.setsockopt(SOL_PACKET, option, value)


def _bind_spkt(sock, ifindex):
    """SOCK_PACKET binds by name in a bare struct sockaddr (net/packet/
    af_packet.c, packet_bind_spkt), which Python's AF_PACKET bind does not
    make."""
    if not ifindex:
        return
    name = socket.if_indextoname(ifindex).encode()[:13]
    addr = struct.pack("=H14s", socket.AF_PACKET, name)
    if libc.bind(sock.fileno(), ctypes.c_char_p(addr), len(addr)) != 0:
        raise OSError(ctypes.get_errno(), f"bind of a SOCK_PACKET socket to {name.decode()}")


def _bind(sock, ifindex):
    """criu binds every socket, interface 0 (none) too; protocol 0 in the
    address keeps the socket's own (packet_bind). By index: Python's bind
    takes an interface name and cannot say "none"."""
    addr = SOCKADDR_LL.pack(socket.AF_PACKET, 0, ifindex, 0, 0, 0, b"")
    if libc.bind(sock.fileno(), ctypes.c_char_p(addr), len(addr)) != 0:
        raise OSError(ctypes.get_errno(), f"bind of a packet socket to interface {ifindex}")


def open_socket(stub, entry):
    psk = entry.psk
    sock = socket.socket(socket.AF_PACKET, psk.type, psk.protocol)  # network order, as socket(2) takes it
    try:
        if psk.type == SOCK_PACKET:
            _bind_spkt(sock, psk.ifindex)
        else:
            _bind(sock, psk.ifindex)
            _set(sock, PACKET_VERSION, psk.version)
            _set(sock, PACKET_RESERVE, psk.reserve)
            _set(sock, PACKET_TIMESTAMP, psk.timestamp)
            _set(sock, PACKET_COPY_THRESH, psk.copy_thresh)
            for field, option in (("aux_data", PACKET_AUXDATA), ("orig_dev", PACKET_ORIGDEV),
                                  ("vnet_hdr", PACKET_VNET_HDR), ("loss", PACKET_LOSS)):
                if getattr(psk, field):
                    _set(sock, option, 1)
            for m in psk.mclist:
                _set(sock, PACKET_ADD_MEMBERSHIP,
                     PACKET_MREQ.pack(m.index, m.type, len(m.addr), m.addr[:8]))
            for field, option in (("rx_ring", PACKET_RX_RING), ("tx_ring", PACKET_TX_RING)):
                if psk.HasField(field):
                    r = getattr(psk, field)
                    _set(sock, option, TPACKET_REQ3.pack(
                        r.block_size, r.block_nr, r.frame_size, r.frame_nr, r.retire_tmo,
                        r.sizeof_priv, r.features))
            if psk.HasField("fanout"):
                _set(sock, PACKET_FANOUT, psk.fanout)
        restore_options(sock, psk.opts)
        fd = high_dup(sock.detach(), stub.floor)
    finally:
        sock.close()
    set_status_flags(fd, psk.flags)
    return fd


def label(entry):
    psk = entry.psk
    bound = f", interface {psk.ifindex}" if psk.ifindex else ""
    return (f"packet {type_in_words(psk.type)} socket (protocol "
            f"{socket.ntohs(psk.protocol):#06x}{bound})")


KIND = Kind(name="packet socket", fd_type=FD_TYPES["PACKETSK"], entry_field="psk",
            match=is_packet_socket, dump=dump_fd, check=check, open=open_socket,
            label=label)
