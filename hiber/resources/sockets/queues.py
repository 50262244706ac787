"""The data queued in sockets: sk-queues.img, one sk_packet_entry per
message (a datagram, or a piece of a stream) with its bytes after it,
id_for naming the file entry of the socket that will read it (CRIU's
sk-queue.c format), in the order it will be read.

Dump peeks at a socket's receive queue from hiber, through its duplicate of
the socket, without taking anything: recvmsg(MSG_PEEK) reads from the
socket's peek offset (SO_PEEK_OFF), which every peek moves on, so that each
peek returns the next message whole, its boundaries kept. The offset the
program had is put back afterwards. A message carrying descriptors
(SCM_RIGHTS) gives hiber copies of them: the caller dumps them as files of
the tree (CRIU dumps them as open files nobody holds) and the entry names
them by file id in its scm_entry. A datagram keeps the address of its
sender, in a field of hiber's own.

Restore sends each message, in order, from a socket that can reach the
reader (its peer, or the sender it came from), with the descriptors it
carried.
"""

import array
import errno
import os
import socket
from dataclasses import dataclass

from ...images.messages import classes
from ..files.common import UnsupportedFile
from .options import SO_PEEK_OFF

SCM_RIGHTS, SCM_CREDENTIALS, SCM_PIDFD = 1, 2, 4
# enough control space for SCM_MAX_FD (253) descriptors and the rest
CONTROL_SPACE = 4096
FIRST_PEEK = 1 << 16
INT = array.array("i").itemsize


@dataclass
class Message:
    """One message peeked from a receive queue."""
    data: bytes
    sender: bytes = b""      # a datagram's source address; b"": none
    passed: tuple = ()       # file ids of the descriptors it carries (SCM_RIGHTS)


def _passed_fds(ancillary):
    """The descriptors a peek put in hiber (scm_detach_fds): those of
    SCM_RIGHTS, and the pidfd of SCM_PIDFD, which is closed at once.
    Returns the SCM_RIGHTS ones, in order."""
    rights = []
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET or kind not in (SCM_RIGHTS, SCM_PIDFD):
            continue
        fds = array.array("i")
        fds.frombytes(data[:len(data) - len(data) % INT])
        if kind == SCM_RIGHTS:
            rights.extend(fds)
        else:
            for fd in fds:
                os.close(fd)
    return rights


def _close_all(fds):
    for fd in fds:
        os.close(fd)


def _address_bytes(address):
    """recvmsg's source address as bytes (Python gives a path as str, an
    abstract name as bytes, nothing as '' or None)."""
    if not address:
        return b""
    return os.fsencode(address) if isinstance(address, str) else bytes(address)


def _peek_one(sock, size, flags):
    """(data, ancillary, sender) of the next message, or None at the end.
    With MSG_TRUNC a datagram peek returns the datagram's whole length
    (unix_dgram_recvmsg): one bigger than the buffer is peeked again, from
    the same offset, with room for it."""
    start = sock.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF)
    while True:
        buffer = bytearray(size)
        try:
            length, ancillary, _, sender = sock.recvmsg_into([buffer], CONTROL_SPACE, flags)
        except BlockingIOError:
            return None
        if length <= size or sock.type == socket.SOCK_STREAM:
            return bytes(buffer[:length]), ancillary, _address_bytes(sender)
        _close_all(_passed_fds(ancillary))
        sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, start)
        size = length


def peek_queue(sock, where, dump_passed=None):
    """Every message queued for ``sock`` to read, in order, untouched: a
    list of Message.

    ``dump_passed(fds) -> file ids`` dumps the descriptors a message
    carries (hiber's copies, which it takes over); without it such a
    message is refused.

    The end of the queue: EAGAIN, or for a stream and a seqpacket socket
    shut down for reading, a read of 0 bytes. A seqpacket socket's queue
    may hold messages of 0 bytes too: while peeking, SO_PASSCRED is on, so
    that each message comes with its sender's credentials and the end with
    none (scm_recv)."""
    sock_type = sock.type
    peek_off = sock.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF)
    passcred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED)
    flags = socket.MSG_PEEK | socket.MSG_DONTWAIT
    if sock_type != socket.SOCK_STREAM:
        flags |= socket.MSG_TRUNC
    messages = []
    sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
    if sock_type == socket.SOCK_SEQPACKET and not passcred:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        if sock_type == socket.SOCK_STREAM:
            _refuse_urgent_data(sock, where)
        while True:
            peeked = _peek_one(sock, FIRST_PEEK, flags)
            if peeked is None:
                break
            data, ancillary, sender = peeked
            fds = _passed_fds(ancillary)
            if fds and dump_passed is None:
                _close_all(fds)
                raise UnsupportedFile(f"{where} has file descriptors (SCM_RIGHTS) queued in "
                                      "it, which hiber cannot dump yet")
            if not data and not fds:
                if sock_type == socket.SOCK_STREAM:
                    break  # a stream queues no empty pieces: this is its end
                if sock_type == socket.SOCK_SEQPACKET and not any(
                        kind == SCM_CREDENTIALS for _, kind, _ in ancillary):
                    break
            passed = tuple(dump_passed(fds)) if fds else ()
            messages.append(Message(data, sender if sock_type == socket.SOCK_DGRAM else b"",
                                    passed))
    finally:
        sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, peek_off)
        if sock_type == socket.SOCK_SEQPACKET and not passcred:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
    return messages


def _refuse_urgent_data(sock, where):
    """A byte sent with MSG_OOB waits apart, and a peek of the stream steps
    over it (unix_stream_read_generic): refuse rather than lose it. Peeking
    it with MSG_OOB finds it; EINVAL says there is none, or it is inline
    (SO_OOBINLINE), where the peeks find it as any other byte."""
    try:
        urgent = sock.recv(1, socket.MSG_OOB | socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EAGAIN, errno.EOPNOTSUPP):
            return
        raise
    if urgent:
        raise UnsupportedFile(f"{where} has an out-of-band byte (MSG_OOB) queued in it, which "
                              "hiber cannot dump yet")


class QueuedMessages:
    """The dump's sk-queues.img: messages by the file id of their reader."""

    def __init__(self):
        self.entries = []  # (sk_packet_entry, bytes), in image order

    def add(self, file_id, messages):
        for m in messages:
            entry = classes["sk_packet_entry"](id_for=file_id, length=len(m.data))
            if m.passed:
                entry.scm.add(type=SCM_RIGHTS, rights=m.passed)
            if m.sender:
                entry.sender = m.sender
            self.entries.append((entry, m.data))

    def write_images(self, images):
        if self.entries:  # a global image exists only with entries (spec §1.7)
            images.write("SK_QUEUES", None, self.entries)


def read_queues(images):
    """file id -> [(sk_packet_entry, bytes)], in the order of the image."""
    out = {}
    if images.exists("SK_QUEUES"):
        for e in images.read_entries("SK_QUEUES"):
            out.setdefault(e.message.id_for, []).append((e.message, e.extra or b""))
    return out


def check_packets(packets, where):
    """Before a restore: what a queue holds that could not be sent back."""
    for packet, data in packets:
        if len(data) != packet.length:
            raise UnsupportedFile(f"{where}: sk-queues.img holds {len(data)} bytes for a "
                                  f"message of {packet.length}")
        for scm in packet.scm:
            if scm.type != SCM_RIGHTS:
                raise UnsupportedFile(f"{where} has control messages of type {scm.type} "
                                      "queued: hiber restores descriptors (SCM_RIGHTS) only")


def send_message(sender, packet, data, where, fds=(), address=None):
    """Queue one message back, from ``sender``: to its peer, or to
    ``address``; with the descriptors ``fds`` (SCM_RIGHTS). Without waiting
    (a queue that does not fit is an error, never a stub hung for ever) and
    without SIGPIPE."""
    flags = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
    ancillary = [(socket.SOL_SOCKET, SCM_RIGHTS, array.array("i", fds))] if fds else []
    view = memoryview(data)
    try:
        if address is None:
            sent = sender.sendmsg([view], ancillary, flags)
        else:
            sent = sender.sendmsg([view], ancillary, flags, address)
    except BlockingIOError:
        raise UnsupportedFile(f"{where}: its queue did not fit back (the kernel takes at most "
                              "net.unix.max_dgram_qlen datagrams from sockets other than its "
                              "peer)") from None
    if sender.type == socket.SOCK_STREAM:
        while sent < len(data):  # a stream may take a piece at a time
            sent += sender.send(view[sent:], flags)
    elif sent != len(data):
        raise OSError(errno.EMSGSIZE, f"{where}: a message of {len(data)} bytes was "
                                      f"queued back as {sent}")


def refill(sender, packets, where, fds_of=None):
    """Queue ``packets`` (sk_packet_entry, bytes) back for the peer of
    ``sender`` to read: sent in order, each datagram whole; ``fds_of(file
    ids) -> fds`` gives the descriptors a message carries."""
    for packet, data in packets:
        fds = ()
        if len(packet.scm):
            if fds_of is None:
                raise UnsupportedFile(f"{where} has file descriptors (SCM_RIGHTS) queued in it, "
                                      "and nothing to send them with")
            fds = fds_of(rights_of(packet))
        send_message(sender, packet, data, where, fds)


def rights_of(packet):
    """The file ids of the descriptors a queued message carries."""
    return [file_id for scm in packet.scm if scm.type == SCM_RIGHTS for file_id in scm.rights]
