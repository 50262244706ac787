"""The IP, IPv6, raw and TCP options of an inet socket, as CRIU 4.2 keeps
them (ip_opts_entry, ip_opts_raw_entry, tcp_opts_entry): dumped with
getsockopt() when set, given back with setsockopt(). The SOL_SOCKET ones
are options.py's."""

import socket
import struct

from ...images.messages import classes
from ...kernel import tcp_repair as R

SOL_IP, SOL_IPV6, SOL_RAW, SOL_ICMPV6 = 0, 41, 255, 58
IP_TOS, IP_TTL, IP_HDRINCL, IP_PKTINFO = 1, 2, 3, 8
IP_FREEBIND, IP_NODEFRAG = 15, 22
IPV6_HDRINCL, IPV6_RECVPKTINFO, IPV6_V6ONLY, IPV6_FREEBIND = 36, 49, 26, 78
ICMP_FILTER, ICMPV6_FILTER = 1, 1


def dump_ip_options(sock, family, sock_type, proto):
    """ip_opts_entry: what CRIU's dump_ip_opts keeps (only what is set)."""
    ip = classes["ip_opts_entry"]()
    if family == socket.AF_INET6:
        freebind = sock.getsockopt(SOL_IPV6, IPV6_FREEBIND)
        pktinfo = sock.getsockopt(SOL_IPV6, IPV6_RECVPKTINFO)
        tos = ttl = 0
    else:
        freebind = sock.getsockopt(SOL_IP, IP_FREEBIND)
        pktinfo = sock.getsockopt(SOL_IP, IP_PKTINFO)
        tos = sock.getsockopt(SOL_IP, IP_TOS)
        ttl = sock.getsockopt(SOL_IP, IP_TTL)
    if freebind:
        ip.freebind = True
    if pktinfo:
        ip.pktinfo = True
    if tos:
        ip.tos = tos
    if ttl:
        ip.ttl = ttl
    if sock_type == socket.SOCK_RAW:
        raw = ip.raw
        if family == socket.AF_INET6:
            hdrincl = sock.getsockopt(SOL_IPV6, IPV6_HDRINCL)
            if proto == socket.IPPROTO_ICMPV6:
                raw.icmpv_filter.extend(struct.unpack("=8I", sock.getsockopt(
                    SOL_ICMPV6, ICMPV6_FILTER, 32)))
        else:
            hdrincl = sock.getsockopt(SOL_IP, IP_HDRINCL)
            if sock.getsockopt(SOL_IP, IP_NODEFRAG):
                raw.nodefrag = True
            if proto == socket.IPPROTO_ICMP:
                raw.icmpv_filter.extend(struct.unpack("=I", sock.getsockopt(
                    SOL_RAW, ICMP_FILTER, 4)))
        if hdrincl:
            raw.hdrincl = True
        raw.SetInParent()
    return ip


def dump_tcp_options(sock):
    """tcp_opts_entry: the ones set (CRIU's dump_tcp_opts)."""
    t = classes["tcp_opts_entry"]()
    for field, option in (("nodelay", R.TCP_NODELAY), ("cork", R.TCP_CORK)):
        if sock.getsockopt(R.SOL_TCP, option):
            setattr(t, field, True)
    for field, option in (("keepcnt", R.TCP_KEEPCNT), ("keepidle", R.TCP_KEEPIDLE),
                          ("keepintvl", R.TCP_KEEPINTVL)):
        value = sock.getsockopt(R.SOL_TCP, option)
        if value:
            setattr(t, field, value)
    return t


def restore_ip_options(sock, isk):
    ip = isk.ip_opts
    if isk.family == socket.AF_INET6:
        if ip.freebind:
            sock.setsockopt(SOL_IPV6, IPV6_FREEBIND, 1)
        if ip.pktinfo:
            sock.setsockopt(SOL_IPV6, IPV6_RECVPKTINFO, 1)
    else:
        for field, option in (("freebind", IP_FREEBIND), ("pktinfo", IP_PKTINFO),
                              ("tos", IP_TOS), ("ttl", IP_TTL)):
            if ip.HasField(field):
                sock.setsockopt(SOL_IP, option, int(getattr(ip, field)))
    if ip.HasField("raw"):
        raw = ip.raw
        if len(raw.icmpv_filter):
            words = list(raw.icmpv_filter)
            level, option = (SOL_ICMPV6, ICMPV6_FILTER) if isk.family == socket.AF_INET6 \
                else (SOL_RAW, ICMP_FILTER)
            sock.setsockopt(level, option, struct.pack(f"={len(words)}I", *words))
        if raw.HasField("nodefrag"):
            sock.setsockopt(SOL_IP, IP_NODEFRAG, int(raw.nodefrag))
        if raw.HasField("hdrincl"):
            level, option = (SOL_IPV6, IPV6_HDRINCL) if isk.family == socket.AF_INET6 \
                else (SOL_IP, IP_HDRINCL)
            sock.setsockopt(level, option, int(raw.hdrincl))


def restore_tcp_options(sock, t):
    for field, option in (("nodelay", R.TCP_NODELAY), ("cork", R.TCP_CORK),
                          ("keepcnt", R.TCP_KEEPCNT), ("keepidle", R.TCP_KEEPIDLE),
                          ("keepintvl", R.TCP_KEEPINTVL)):
        if t.HasField(field):
            sock.setsockopt(R.SOL_TCP, option, int(getattr(t, field)))
