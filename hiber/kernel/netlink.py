"""Netlink dumps (NLM_F_DUMP): a request, then every message of the reply
until NLMSG_DONE; and the attributes packed after a message's head.  Used
by sock_diag (socket families) and rtnetlink (links).  The socket, and so
the dump, belongs to the network namespace of the thread that makes it."""

import os
import socket
import struct

NLMSG_HEADER = struct.Struct("=IHHII")   # len, type, flags, seq, pid
NLA_HEADER = struct.Struct("=HH")        # len, type
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300


def dump(protocol, request_type, body, reply_type, what):
    """The payloads of every reply_type message the kernel answers a dump
    request with; an error reply raises OSError naming ``what``."""
    out = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       protocol) as nl:
        nl.sendto(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), request_type,
                                    NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body, (0, 0))
        while True:
            reply = nl.recv(1 << 16)
            if not reply:
                return out
            offset = 0
            while offset + NLMSG_HEADER.size <= len(reply):
                length, kind, _, _, _ = NLMSG_HEADER.unpack_from(reply, offset)
                payload = reply[offset + NLMSG_HEADER.size:offset + length]
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    raise OSError(code, f"{what}: {os.strerror(code)}")
                if kind == reply_type:
                    out.append(payload)
                if length < NLMSG_HEADER.size:
                    return out
                offset += (length + 3) & ~3  # messages are aligned to 4 bytes


def attributes(data):
    """type -> payload of the netlink attributes packed in ``data`` (the
    type's two top bits, NLA_F_NESTED and NLA_F_NET_BYTEORDER, dropped)."""
    out = {}
    offset = 0
    while offset + NLA_HEADER.size <= len(data):
        length, kind = NLA_HEADER.unpack_from(data, offset)
        if length < NLA_HEADER.size:
            break
        out[kind & 0x3fff] = data[offset + NLA_HEADER.size:offset + length]
        offset += (length + 3) & ~3  # attributes are aligned to 4 bytes
    return out
