"""Sockets of the families hiber cannot dump yet (vsock, tipc, alg, ...):
recognised only to be refused in one line that names the family, the type
and the protocol. Tried after every family hiber dumps (unix, netlink,
packet, inet and inet6).

Their file entries in CRIU's images are refused by the table's fallback,
which names their type."""

import socket

from ..files.common import UnsupportedFile
from ..files.table import FD_TYPES, Kind
from .common import family_in_words, is_socket, socket_of, type_in_words

PROTOCOL_WORDS = {socket.IPPROTO_TCP: "TCP", socket.IPPROTO_UDP: "UDP",
                  socket.IPPROTO_ICMP: "ICMP", socket.IPPROTO_ICMPV6: "ICMPv6",
                  136: "UDP-Lite", socket.IPPROTO_SCTP: "SCTP"}


def refuse(table, fd):
    with socket_of(fd) as sock:
        family, sock_type, protocol = sock.family, sock.type, sock.proto
    what = f"{family_in_words(family)} {type_in_words(sock_type)} socket"
    if family in (socket.AF_INET, socket.AF_INET6) and protocol in PROTOCOL_WORDS:
        what += f" ({PROTOCOL_WORDS[protocol]})"
    article = "an" if what[0] in "aeiou" else "a"
    raise UnsupportedFile(f"PID {fd.pid} fd {fd.fd} is {article} {what} ({fd.link}): hiber "
                          f"cannot dump {family_in_words(family)} sockets yet")


def _no_entry(*_):
    raise AssertionError("sockets of other families have no file entries of hiber's")


KIND = Kind(name="socket of another family", fd_type=FD_TYPES["UND"], entry_field="",
            match=is_socket, dump=refuse, check=_no_entry, open=_no_entry,
            label=_no_entry)
