"""TCP_REPAIR (Linux 3.5+; Documentation/networking and net/ipv4/tcp.c):
with the socket in repair mode, a connection's sequence numbers, queues,
negotiated options and window can be read and set without a packet going
out. The option numbers and structs, as include/uapi/linux/tcp.h has them."""

import fcntl
import struct

SOL_TCP = 6
TCP_MAXSEG, TCP_NODELAY, TCP_CORK = 2, 1, 3
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 4, 5, 6
TCP_INFO = 11
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_REPAIR_OPTIONS = 19, 20, 21, 22
TCP_TIMESTAMP = 24
TCP_REPAIR_WINDOW = 29
TCP_REPAIR_ON, TCP_REPAIR_OFF = 1, 0   # off sends a window probe to wake the peer
TCP_NO_QUEUE, TCP_RECV_QUEUE, TCP_SEND_QUEUE = 0, 1, 2

# tcp_info's options bits (TCPI_OPT_*) and the TCP option codes repair sets
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
TCPOPT_MAXSEG, TCPOPT_WINDOW, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP = 2, 3, 4, 8

# ioctls: bytes unread, bytes not acknowledged, bytes not sent (SIOCINQ,
# SIOCOUTQ, SIOCOUTQNSD)
SIOCINQ, SIOCOUTQ, SIOCOUTQNSD = 0x541B, 0x5411, 0x894B

# TCP states (include/net/tcp_states.h)
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT = 1, 2, 3, 4, 5, 6
CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING = 7, 8, 9, 10, 11

TCP_INFO_HEAD = struct.Struct("=7B")  # state, ca_state, retransmits, probes, backoff,
                                      # options, snd_wscale:4 | rcv_wscale:4
TCP_INFO_LISTEN = struct.Struct("=I")  # after 24 bytes: tcpi_unacked (a listener's
                                       # waiting connections)
REPAIR_OPT = struct.Struct("=II")      # struct tcp_repair_opt: code, value
REPAIR_WINDOW = struct.Struct("=5I")   # snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup
U32 = struct.Struct("=I")


def tcp_info(sock):
    """(state, options, snd_wscale, rcv_wscale, backoff) of tcp_info."""
    raw = sock.getsockopt(SOL_TCP, TCP_INFO, 104)
    state, _, _, _, backoff, options, wscale = TCP_INFO_HEAD.unpack_from(raw)
    return state, options, wscale & 0xf, wscale >> 4, backoff


def queue_length(sock, request):
    return struct.unpack("=i", fcntl.ioctl(sock.fileno(), request, b"\0" * 4))[0]


def set_repair(sock, on):
    sock.setsockopt(SOL_TCP, TCP_REPAIR, TCP_REPAIR_ON if on else TCP_REPAIR_OFF)


def select_queue(sock, queue):
    sock.setsockopt(SOL_TCP, TCP_REPAIR_QUEUE, queue)
