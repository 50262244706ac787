"""Socket options (SOL_SOCKET level), as CRIU's sk_opts_entry keeps them
for every family, plus three of hiber's own that unix sockets use.

Dump reads them with getsockopt() on hiber's duplicate of the socket;
restore sets them with setsockopt() in the stub. A classic socket filter
(SO_ATTACH_FILTER) is kept as CRIU keeps it: its instructions, one
struct sock_filter (8 bytes) to each so_filter word.
"""

import ctypes
import os
import socket
import struct

from ...images.messages import classes
from ...kernel.sys import libc
from ..files.common import UnsupportedFile

SOL_SOCKET = socket.SOL_SOCKET
SO_NO_CHECK, SO_PRIORITY, SO_LINGER = 11, 12, 13
SO_RCVTIMEO, SO_SNDTIMEO = 20, 21    # the _OLD ones: a struct timeval on x86-64
SO_BINDTODEVICE, SO_ATTACH_FILTER, SO_GET_FILTER = 25, 26, 26
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SO_PASSSEC, SO_MARK, SO_PEEK_OFF = 34, 36, 42
SO_BUF_LOCK = 72                     # Linux 5.14
SO_PASSPIDFD = 76                    # Linux 6.5
SO_PASSRIGHTS = 83                   # Linux 6.16
TIMEVAL = struct.Struct("=qq")
LINGER = struct.Struct("=ii")
IFNAMSIZ = 16

# on/off options CRIU keeps, by sk_opts_entry field
SWITCHES = {"reuseaddr": socket.SO_REUSEADDR, "so_reuseport": socket.SO_REUSEPORT,
            "so_dontroute": socket.SO_DONTROUTE, "so_no_check": SO_NO_CHECK,
            "so_broadcast": socket.SO_BROADCAST, "so_keepalive": socket.SO_KEEPALIVE}
# ... and those only unix and netlink sockets have (CRIU: dump_socket_opts)
PASS_SWITCHES = {"so_passcred": socket.SO_PASSCRED, "so_passsec": SO_PASSSEC}


def _int(sock, option):
    return sock.getsockopt(SOL_SOCKET, option)


def _optional_int(sock, option):
    """An option older kernels lack (ENOPROTOOPT): None there."""
    try:
        return _int(sock, option)
    except OSError:
        return None


def _filter_blocks(sock):
    """How many instructions the socket filter has: getsockopt(SO_GET_FILTER)
    with a length of 0 asks only that (net/core/filter.c, sk_get_filter)."""
    length = ctypes.c_uint32(0)
    if libc.getsockopt(sock.fileno(), SOL_SOCKET, SO_GET_FILTER, None,
                       ctypes.byref(length)) != 0:
        return 0
    return length.value


def _filter(sock, where):
    """The socket filter's instructions, each struct sock_filter as one
    little-endian 64-bit word (CRIU's so_filter)."""
    blocks = _filter_blocks(sock)
    if not blocks:
        return []
    buf = ctypes.create_string_buffer(blocks * 8)
    length = ctypes.c_uint32(blocks)  # sk_get_filter counts instructions, not bytes
    if libc.getsockopt(sock.fileno(), SOL_SOCKET, SO_GET_FILTER, buf,
                       ctypes.byref(length)) != 0:
        err = ctypes.get_errno()
        raise UnsupportedFile(f"{where}: cannot read its socket filter: {os.strerror(err)}")
    return list(struct.unpack(f"<{length.value}Q", buf.raw[:length.value * 8]))


def _attach_filter(sock, words):
    """SO_ATTACH_FILTER with a struct sock_fprog (u16 len, pointer)."""
    program = (ctypes.c_uint64 * len(words))(*words)
    fprog = struct.pack("=HxxxxxxQ", len(words), ctypes.addressof(program))
    sock.setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def dump_options(sock, where):
    """The sk_opts_entry of ``sock`` (hiber's socket object of a frozen
    process's socket); ``where`` names it in a refusal."""
    program = _filter(sock, where)
    snd = TIMEVAL.unpack(sock.getsockopt(SOL_SOCKET, SO_SNDTIMEO, TIMEVAL.size))
    rcv = TIMEVAL.unpack(sock.getsockopt(SOL_SOCKET, SO_RCVTIMEO, TIMEVAL.size))
    opts = classes["sk_opts_entry"](
        so_sndbuf=_int(sock, socket.SO_SNDBUF), so_rcvbuf=_int(sock, socket.SO_RCVBUF),
        so_snd_tmo_sec=snd[0], so_snd_tmo_usec=snd[1],
        so_rcv_tmo_sec=rcv[0], so_rcv_tmo_usec=rcv[1],
        so_priority=_int(sock, SO_PRIORITY), so_rcvlowat=_int(sock, socket.SO_RCVLOWAT))
    buf_lock = _optional_int(sock, SO_BUF_LOCK)
    if buf_lock is not None:
        opts.so_buf_lock = buf_lock
    mark = _int(sock, SO_MARK)
    if mark:  # as CRIU: only when set, as setting it takes CAP_NET_ADMIN
        opts.so_mark = mark
    for field, option in SWITCHES.items():
        setattr(opts, field, bool(_int(sock, option)))
    if sock.family in (socket.AF_UNIX, socket.AF_NETLINK):
        for field, option in PASS_SWITCHES.items():
            setattr(opts, field, bool(_int(sock, option)))
    opts.so_oobinline = _int(sock, socket.SO_OOBINLINE)
    onoff, seconds = LINGER.unpack(sock.getsockopt(SOL_SOCKET, SO_LINGER, LINGER.size))
    if onoff:
        opts.so_linger = seconds
    device = sock.getsockopt(SOL_SOCKET, SO_BINDTODEVICE, IFNAMSIZ).rstrip(b"\0")
    if device:
        opts.so_bound_dev = device.decode()
    if program:
        opts.so_filter.extend(program)
    _dump_unix_own(sock, opts)
    return opts


def _dump_unix_own(sock, opts):
    """hiber's own fields: what a unix socket's reader sees that CRIU drops."""
    if sock.family != socket.AF_UNIX:
        return
    peek_off = _int(sock, SO_PEEK_OFF)
    if peek_off >= 0:  # -1: the program never turned it on
        opts.so_peek_off = peek_off
    if _optional_int(sock, SO_PASSPIDFD):
        opts.so_passpidfd = True
    if _optional_int(sock, SO_PASSRIGHTS) == 0:
        opts.so_passrights = False


def make_room(sock):
    """Before the stub queues a socket's data back: the largest send and
    receive buffers, so that what the dumped socket held fits whatever its
    own sizes are now (they come back after, with restore_options). The
    kernel doubles what it is given and caps it to an int (sock_setsockopt)."""
    for option in (SO_SNDBUFFORCE, SO_RCVBUFFORCE):
        sock.setsockopt(SOL_SOCKET, option, 0x7fffffff // 2)


def restore_options(sock, opts):
    """Give ``sock`` (a socket object of the stub) the options of ``opts``."""
    # the kernel doubles a size it is given: half of what getsockopt said
    sock.setsockopt(SOL_SOCKET, SO_SNDBUFFORCE, opts.so_sndbuf // 2)
    sock.setsockopt(SOL_SOCKET, SO_RCVBUFFORCE, opts.so_rcvbuf // 2)
    if opts.HasField("so_buf_lock"):  # after the sizes, which lock them
        sock.setsockopt(SOL_SOCKET, SO_BUF_LOCK, opts.so_buf_lock)
    for field, option in (("so_priority", SO_PRIORITY), ("so_rcvlowat", socket.SO_RCVLOWAT),
                          ("so_mark", SO_MARK)):
        if opts.HasField(field):
            sock.setsockopt(SOL_SOCKET, option, getattr(opts, field))
    for field, option in {**SWITCHES, **PASS_SWITCHES}.items():
        if getattr(opts, field):
            sock.setsockopt(SOL_SOCKET, option, 1)
    if opts.so_oobinline:
        sock.setsockopt(SOL_SOCKET, socket.SO_OOBINLINE, 1)
    if opts.HasField("so_linger"):
        sock.setsockopt(SOL_SOCKET, SO_LINGER, LINGER.pack(1, opts.so_linger))
    sock.setsockopt(SOL_SOCKET, SO_SNDTIMEO, TIMEVAL.pack(opts.so_snd_tmo_sec,
                                                          opts.so_snd_tmo_usec))
    sock.setsockopt(SOL_SOCKET, SO_RCVTIMEO, TIMEVAL.pack(opts.so_rcv_tmo_sec,
                                                          opts.so_rcv_tmo_usec))
    if opts.so_bound_dev:
        sock.setsockopt(SOL_SOCKET, SO_BINDTODEVICE, opts.so_bound_dev.encode())
    if len(opts.so_filter):
        _attach_filter(sock, list(opts.so_filter))
    if opts.HasField("so_peek_off"):
        sock.setsockopt(SOL_SOCKET, SO_PEEK_OFF, opts.so_peek_off)
    if opts.so_passpidfd:
        sock.setsockopt(SOL_SOCKET, SO_PASSPIDFD, 1)
    if opts.HasField("so_passrights") and not opts.so_passrights:
        sock.setsockopt(SOL_SOCKET, SO_PASSRIGHTS, 0)


def check_options(opts, where):
    """Before a restore: refuse what restore_options could not give back."""
    if opts.so_bound_dev:
        try:
            socket.if_nametoindex(opts.so_bound_dev)
        except OSError:
            raise UnsupportedFile(f"{where} was bound to network device {opts.so_bound_dev} "
                                  "(SO_BINDTODEVICE), which this machine does not have") \
                from None
