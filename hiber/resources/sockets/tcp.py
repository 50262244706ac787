"""Established TCP connections, through TCP_REPAIR (kernel/tcp_repair.py),
as CRIU 4.2 keeps them: the inet_sk_entry in files.img, and in
tcp-stream-INO.img the sequence numbers, the queues (unread bytes, then
sent-but-unacknowledged and unsent bytes), MSS, window scales, SACK,
timestamps and the window (TCP_REPAIR_WINDOW).

Dump puts the socket in repair mode (after locking its packets out,
netlock.py) and leaves it so: when the dumped tree is killed, a socket in
repair mode closes without a FIN or a RST, and the peer never learns. A
dump that fails, or leaves the tree running, turns repair off again.

Restore makes a new socket in repair mode, binds it, sets the sequence
numbers, "connects" (no SYN in repair mode), puts the options, queues and
window back, and leaves it in repair mode until every socket of the tree
exists (Kind.install), when repair goes off.

Half-closed connections come back as CRIU does: our FIN goes into the
send queue with shutdown(SHUT_WR) in repair mode, and the peer's FIN is
delivered to the new socket as a packet hiber builds and sends on a raw
socket, marked so that the network lock lets it pass.
"""

import socket
import struct

from ...kernel import tcp_repair as R
from ..files.common import UnsupportedFile
from .netlock import SOCCR_MARK
from .options import make_room

# the states whose send queue holds our FIN (first or second), whose FIN
# the peer acknowledged, and those whose receive queue holds the peer's FIN
SNDQ_FIRST_FIN = {R.FIN_WAIT1, R.FIN_WAIT2, R.CLOSING}
SNDQ_SECOND_FIN = {R.LAST_ACK, R.CLOSE}
SNDQ_FIN_ACKED = {R.FIN_WAIT2, R.CLOSE}
RCVQ_FIRST_FIN = {R.CLOSE_WAIT, R.LAST_ACK, R.CLOSE}
RCVQ_SECOND_FIN = {R.CLOSING}
RCVQ_FIN_ACKED = {R.CLOSE}
CONNECTED_STATES = {R.ESTABLISHED, R.FIN_WAIT1, R.FIN_WAIT2, R.CLOSE_WAIT, R.LAST_ACK,
                    R.CLOSING, R.SYN_SENT}


def _queue(sock, queue, length, where):
    """The sequence number at the end of ``queue`` and its bytes, peeked."""
    R.select_queue(sock, queue)
    seq = R.U32.unpack(sock.getsockopt(R.SOL_TCP, R.TCP_QUEUE_SEQ, 4))[0]
    data = b""
    if length:
        # one byte more than said: a longer queue would be a bug to catch
        data = sock.recv(length + 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        if len(data) != length:
            raise UnsupportedFile(f"{where}: its queue holds {len(data)} bytes where the "
                                  f"kernel said {length}")
    return seq, data


def dump_stream(sock, where):
    """(state, tcp_stream_entry, bytes) of a socket in repair mode."""
    from ...images.messages import classes
    state, options, snd_wscale, rcv_wscale, _ = R.tcp_info(sock)
    if state not in CONNECTED_STATES | {R.CLOSE}:
        raise UnsupportedFile(f"{where}: TCP state {state} cannot be dumped")
    outq = R.queue_length(sock, R.SIOCOUTQ)
    unsent = R.queue_length(sock, R.SIOCOUTQNSD)
    if state == R.CLOSE:
        # reset: what it had to send nobody can read any more
        outq = unsent = 0
    if state in SNDQ_FIRST_FIN | SNDQ_SECOND_FIN:
        # our FIN counts as one byte of the send queue, but is no data
        outq = max(outq - 1, 0)
        unsent = max(unsent - 1, 0)
    inq = R.queue_length(sock, R.SIOCINQ)
    entry = classes["tcp_stream_entry"](
        inq_len=inq, outq_len=outq, opt_mask=options, snd_wscale=0,
        mss_clamp=sock.getsockopt(R.SOL_TCP, R.TCP_MAXSEG), unsq_len=unsent)
    if options & R.TCPI_OPT_WSCALE:
        entry.snd_wscale, entry.rcv_wscale = snd_wscale, rcv_wscale
    if options & R.TCPI_OPT_TIMESTAMPS:
        entry.timestamp = R.U32.unpack(sock.getsockopt(R.SOL_TCP, R.TCP_TIMESTAMP, 4))[0]
    window = R.REPAIR_WINDOW.unpack(sock.getsockopt(R.SOL_TCP, R.TCP_REPAIR_WINDOW,
                                                    R.REPAIR_WINDOW.size))
    (entry.snd_wl1, entry.snd_wnd, entry.max_window, entry.rcv_wnd, entry.rcv_wup) = window
    entry.inq_seq, received = _queue(sock, R.TCP_RECV_QUEUE, inq, where)
    entry.outq_seq, sending = _queue(sock, R.TCP_SEND_QUEUE, outq, where)
    R.select_queue(sock, R.TCP_NO_QUEUE)
    return state, entry, received + sending


def sockaddr(family, packed, port):
    return (socket.inet_ntop(family, packed), port) if family == socket.AF_INET else \
        (socket.inet_ntop(family, packed), port, 0, 0)


def _send_queue(sock, queue, data):
    R.select_queue(sock, queue)
    view = memoryview(data)
    chunk = len(view)
    while view:
        try:
            sent = sock.send(view[:chunk])
        except OSError:
            # in repair mode the kernel makes one buffer of what it is
            # given: a huge one may not be had, a smaller may
            if chunk <= 1024:
                raise
            chunk //= 2
            continue
        view = view[sent:]


def restore_stream(sock, ie, stream, data, mark_ok=True):
    """Rebuild the connection of inet_sk_entry ``ie`` in the new socket
    ``sock`` (repair mode is left on)."""
    state = ie.state
    family = ie.family
    src, dst = _packed(ie.src_addr, family), _packed(ie.dst_addr, family)
    # room for both queues whatever the sizes (restore_options gives them
    # back), and no blocking: a full queue is an error, not a hang
    make_room(sock)
    sock.setblocking(False)
    R.set_repair(sock, True)
    sock.bind(sockaddr(family, src, ie.src_port))
    inq_seq, outq_seq = stream.inq_seq, stream.outq_seq
    if state in RCVQ_FIRST_FIN | RCVQ_SECOND_FIN:
        inq_seq -= 1   # the peer's FIN comes back as a packet, below
    if state in SNDQ_FIRST_FIN | SNDQ_SECOND_FIN:
        outq_seq -= 1  # ours, with shutdown()
    R.select_queue(sock, R.TCP_RECV_QUEUE)
    sock.setsockopt(R.SOL_TCP, R.TCP_QUEUE_SEQ,
                    R.U32.pack((inq_seq - stream.inq_len) & 0xffffffff))
    # a SYN not answered yet took one sequence number: it is sent again
    # with the same one
    send_seq = outq_seq - stream.outq_len - (1 if state == R.SYN_SENT else 0)
    R.select_queue(sock, R.TCP_SEND_QUEUE)
    sock.setsockopt(R.SOL_TCP, R.TCP_QUEUE_SEQ, R.U32.pack(send_seq & 0xffffffff))
    R.select_queue(sock, R.TCP_NO_QUEUE)
    if state == R.SYN_SENT:
        # connecting for real (the SYN goes out: the lock holds it back)
        R.set_repair(sock, False)
        try:
            sock.connect(sockaddr(family, dst, ie.dst_port))
        except BlockingIOError:
            pass
        R.set_repair(sock, True)
        if stream.opt_mask & R.TCPI_OPT_TIMESTAMPS:
            sock.setsockopt(R.SOL_TCP, R.TCP_TIMESTAMP, R.U32.pack(stream.timestamp))
        return
    sock.connect(sockaddr(family, dst, ie.dst_port))  # no SYN in repair mode
    options = []
    if stream.opt_mask & R.TCPI_OPT_SACK:
        options.append(R.REPAIR_OPT.pack(R.TCPOPT_SACK_PERM, 0))
    if stream.opt_mask & R.TCPI_OPT_WSCALE:
        options.append(R.REPAIR_OPT.pack(R.TCPOPT_WINDOW,
                                         stream.snd_wscale | stream.rcv_wscale << 16))
    if stream.opt_mask & R.TCPI_OPT_TIMESTAMPS:
        options.append(R.REPAIR_OPT.pack(R.TCPOPT_TIMESTAMP, 0))
    options.append(R.REPAIR_OPT.pack(R.TCPOPT_MAXSEG, stream.mss_clamp))
    sock.setsockopt(R.SOL_TCP, R.TCP_REPAIR_OPTIONS, b"".join(options))
    if stream.opt_mask & R.TCPI_OPT_TIMESTAMPS:
        sock.setsockopt(R.SOL_TCP, R.TCP_TIMESTAMP, R.U32.pack(stream.timestamp))
    received, sending = data[:stream.inq_len], data[stream.inq_len:]
    if received:
        _send_queue(sock, R.TCP_RECV_QUEUE, received)
    unsent = stream.unsq_len
    sent = sending[:len(sending) - unsent]
    if sent:  # sent and not acknowledged: the peer may acknowledge them
        _send_queue(sock, R.TCP_SEND_QUEUE, sent)
    R.select_queue(sock, R.TCP_NO_QUEUE)
    if unsent:  # never sent: sent now, as any data, once repair is off
        R.set_repair(sock, False)
        sock.sendall(sending[len(sending) - unsent:])
        R.set_repair(sock, True)
    if stream.HasField("snd_wnd"):
        window = [stream.snd_wl1, stream.snd_wnd, stream.max_window, stream.rcv_wnd,
                  stream.rcv_wup]
        if state in RCVQ_FIRST_FIN | RCVQ_SECOND_FIN:
            window[4] -= 1   # rcv_wup: before the FIN to come
            window[3] += 1
        sock.setsockopt(R.SOL_TCP, R.TCP_REPAIR_WINDOW, R.REPAIR_WINDOW.pack(*window))
    if state in SNDQ_FIRST_FIN:
        _our_fin(sock, state in SNDQ_FIN_ACKED)
    if state in RCVQ_FIRST_FIN | RCVQ_SECOND_FIN:
        _peer_packet(ie, src, dst, inq_seq, (outq_seq - stream.outq_len) & 0xffffffff,
                     stream.rcv_wnd, FIN | ACK)
    if state in SNDQ_SECOND_FIN:
        _our_fin(sock, state in SNDQ_FIN_ACKED)
    if state in SNDQ_FIN_ACKED:
        _peer_packet(ie, src, dst, (inq_seq + (1 if state in RCVQ_FIN_ACKED else 0)),
                     (outq_seq + 1 - stream.outq_len) & 0xffffffff, stream.rcv_wnd, ACK)


def _our_fin(sock, acked):
    """Our FIN into the send queue: as sent already when the peer
    acknowledged it (so it is not sent again)."""
    if acked:
        R.select_queue(sock, R.TCP_SEND_QUEUE)
    try:
        sock.shutdown(socket.SHUT_WR)
    finally:
        if acked:
            R.select_queue(sock, R.TCP_NO_QUEUE)


FIN, ACK = 0x01, 0x10


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def _peer_packet(ie, src, dst, seq, ack, window, flags):
    """A packet from the peer to the restored socket (its FIN, or the ACK
    of ours), built whole and sent on a raw socket marked to pass the lock."""
    family = ie.family
    mapped = family == socket.AF_INET6 and src[:12] == b"\0" * 10 + b"\xff\xff"
    if mapped:
        family, src, dst = socket.AF_INET, src[12:], dst[12:]
    tcp = struct.pack("!HHIIBBHHH", ie.dst_port, ie.src_port, seq & 0xffffffff,
                      ack & 0xffffffff, 5 << 4, flags, min(window, 0xffff), 0, 0)
    if family == socket.AF_INET:
        pseudo = dst + src + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    else:
        pseudo = dst + src + struct.pack("!I3xB", len(tcp), socket.IPPROTO_TCP)
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    if family == socket.AF_INET:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64,
                             socket.IPPROTO_TCP, 0, dst, src)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        where = (socket.inet_ntop(family, src), 0)
    else:
        header = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), socket.IPPROTO_TCP, 64,
                             dst, src)
        where = (socket.inet_ntop(family, src), 0, 0, 0)
    with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, SOCCR_MARK)
        raw.sendto(header + tcp, where)


def _packed(words, family):
    """An address of the image (32-bit words in network order) as bytes."""
    raw = struct.pack(f"={len(words)}I", *words)
    return raw[:4] if family == socket.AF_INET else raw[:16]
